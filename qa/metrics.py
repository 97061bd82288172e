"""Talk metrics of a two-party call: pure functions over speech spans and transcript segments.

Silence metrics are measured between the first and the last speech of the
call: ringing before the first word and the tail after the last are not dead
air anyone caused.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from qa.segments import AGENT, CUSTOMER, Span, TranscriptSegment

_HAN = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[^\W\d_\u3400-\u9fff]+(?:'[^\W\d_]+)?|\d+")


@dataclass(frozen=True)
class TalkMetrics:
    # None: not measurable (a mono recording cannot tell the parties apart).
    agent_talk_s: float | None
    customer_talk_s: float | None
    agent_talk_ratio: float | None  # agent talk / all talk; None also when nobody spoke
    longest_silence_s: float  # dead air: longest stretch where neither party speaks
    total_silence_s: float
    overtalk_s: float | None  # both speaking at once
    interruptions_by_agent: int | None  # agent cut in while the customer was speaking
    interruptions_by_customer: int | None
    agent_response_latency_s: float | None  # mean gap from the customer's last word to the agent's reply
    customer_response_latency_s: float | None
    agent_words_per_minute: float | None  # Chinese counts characters
    customer_words_per_minute: float | None

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def total(spans: list[Span]) -> float:
    return sum(s.duration for s in spans)


def overlap(a: list[Span], b: list[Span]) -> float:
    """Seconds during which a span of a and a span of b both run (each list sorted, non-overlapping)."""
    i = j = 0
    seconds = 0.0
    while i < len(a) and j < len(b):
        seconds += max(0.0, min(a[i].end, b[j].end) - max(a[i].start, b[j].start))
        if a[i].end < b[j].end:
            i += 1
        else:
            j += 1
    return seconds


def union(*parties: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted((s for p in parties for s in p), key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def silences(*parties: list[Span]) -> list[float]:
    """Lengths of the gaps where nobody speaks, between the first and the last speech."""
    speech = union(*parties)
    return [b.start - a.end for a, b in zip(speech, speech[1:], strict=False)]


def interruptions(by: list[Span], of: list[Span], min_overlap_s: float) -> int:
    """Times a span of `by` starts while a span of `of` is running and overlaps it by min_overlap_s or more.

    The overlap floor keeps a short "mm-hm" or a reply that starts a beat
    before the other party's last syllable from counting as cutting in.
    """
    count = 0
    for s in by:
        for o in of:
            if o.start < s.start < o.end and min(s.end, o.end) - s.start >= min_overlap_s:
                count += 1
                break
    return count


def response_latencies(responder: list[Span], other: list[Span]) -> list[float]:
    """Gaps between the other party finishing and the responder starting, for each change of turn."""
    events = sorted([(s.start, s.end, True) for s in responder] + [(s.start, s.end, False) for s in other])
    gaps = []
    for (_, prev_end, prev_is_responder), (start, _, is_responder) in zip(events, events[1:], strict=False):
        if is_responder and not prev_is_responder and start >= prev_end:
            gaps.append(start - prev_end)
    return gaps


def word_count(text: str) -> int:
    return len(_HAN.findall(text)) + len(_WORD.findall(text))


def words_per_minute(segments: list[TranscriptSegment], speaker: str, talk_s: float) -> float | None:
    if talk_s <= 0:
        return None
    words = sum(word_count(s.text) for s in segments if s.speaker == speaker)
    return words * 60.0 / talk_s


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def talk_metrics(
    agent: list[Span],
    customer: list[Span],
    transcript: list[TranscriptSegment],
    interruption_min_overlap_s: float = 0.5,
) -> TalkMetrics:
    agent_s, customer_s = total(agent), total(customer)
    gaps = silences(agent, customer)
    return TalkMetrics(
        agent_talk_s=agent_s,
        customer_talk_s=customer_s,
        agent_talk_ratio=agent_s / (agent_s + customer_s) if agent_s + customer_s > 0 else None,
        longest_silence_s=max(gaps, default=0.0),
        total_silence_s=sum(gaps),
        overtalk_s=overlap(agent, customer),
        interruptions_by_agent=interruptions(agent, customer, interruption_min_overlap_s),
        interruptions_by_customer=interruptions(customer, agent, interruption_min_overlap_s),
        agent_response_latency_s=_mean(response_latencies(agent, customer)),
        customer_response_latency_s=_mean(response_latencies(customer, agent)),
        agent_words_per_minute=words_per_minute(transcript, AGENT, agent_s),
        customer_words_per_minute=words_per_minute(transcript, CUSTOMER, customer_s),
    )


def mono_metrics(spans: list[Span]) -> TalkMetrics:
    """A mono recording: silence is measurable, who spoke is not."""
    gaps = silences(spans)
    return TalkMetrics(
        agent_talk_s=None,
        customer_talk_s=None,
        agent_talk_ratio=None,
        longest_silence_s=max(gaps, default=0.0),
        total_silence_s=sum(gaps),
        overtalk_s=None,
        interruptions_by_agent=None,
        interruptions_by_customer=None,
        agent_response_latency_s=None,
        customer_response_latency_s=None,
        agent_words_per_minute=None,
        customer_words_per_minute=None,
    )
