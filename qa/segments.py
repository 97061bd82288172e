"""The values that pass between QA stages: plain frozen dataclasses, times in seconds from call start."""

from __future__ import annotations

from dataclasses import dataclass

AGENT = "agent"
CUSTOMER = "customer"
UNKNOWN = "unknown"  # a mono recording: both parties on one channel


@dataclass(frozen=True)
class Span:
    """A stretch of speech found by voice activity detection."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class TranscriptSegment:
    start: float
    end: float
    speaker: str
    text: str
    confidence: float  # exp(mean token log-probability), 0..1

    def to_json(self) -> dict:
        return {
            "speaker": self.speaker,
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "text": self.text,
            "confidence": round(self.confidence, 3),
        }
