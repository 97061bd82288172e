"""The live path's logic, no I/O: utterances cut from a call's audio as it streams, alerts on what was said
and on how the call sounds.

Audio comes as 20 ms frames per direction (telephony.taps). Each channel
gets its own webrtcvad; an utterance is cut when its speaker has been quiet
for vad_merge_gap_ms (the pause that splits utterances after the call too),
or after max_segment_s of unbroken speech (at its last short pause, so a
word is not cut in two), and its spans are found by
qa.vad.spans_from_flags: the same rules as the post-call analysis, applied to
what has arrived. The utterance is then transcribed by qa.live_transcribe
(its own model, a window fitted to it, the call's language found once).

Times are seconds of tap time: frames since the worker's tap opened, 50 a
second per direction (the tap delivers silence too, so this is call time
from the moment live transcription began).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import webrtcvad

from qa.audio import SAMPLE_RATE
from qa.matching import find_phrase
from qa.packing import ChannelSpeech
from qa.scorecard import load_scorecard
from qa.segments import AGENT, CUSTOMER, Span, TranscriptSegment
from qa.transcribe import TranscribeOptions, transcribe_call
from qa.vad import VadOptions, spans_from_flags
from telesales.settings import SettingsError


@dataclass(frozen=True)
class LiveOptions:
    enabled: bool
    max_calls_per_worker: int
    lease_s: float
    poll_s: float
    max_segment_s: float
    max_lag_s: float
    language: str
    service_url: str
    customer_phrases: tuple[str, ...]
    agent_phrases: tuple[str, ...]
    phrase_threshold: float
    max_silence_s: float
    max_overtalk_s: float
    threads: int = 2  # the live model's CPU threads (qa.live_transcribe)
    window_s: float = 10.0  # the shortest window Whisper encodes per utterance


def _scorecard_forbidden(settings: SimpleNamespace) -> tuple[str, ...]:
    """The agent's forbidden phrasings: the phrase_absent checks of the default scorecard."""
    card = load_scorecard(settings.qa.scorecard, settings.config_dir)
    return tuple(p for c in card.checks if c.kind == "phrase_absent" and c.speaker == AGENT
                 for group in c.phrase_groups for p in group)


def _service_url(settings: SimpleNamespace) -> str:
    """Where a worker taps calls: live.service_url, else qa.recordings_url, else this machine's service."""
    url = settings.live.service_url.strip() or settings.qa.recordings_url.strip() or settings.http.public_url.strip()
    if not url:
        host = settings.http.host if settings.http.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        url = f"http://{host}:{settings.http.port}"
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"live.service_url: must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def live_options(settings: SimpleNamespace) -> LiveOptions:
    """Options from settings.live, checked (a bad value names its key)."""
    live = settings.live
    checks = {
        "max_calls_per_worker": live.max_calls_per_worker >= 1,
        "lease_seconds": live.lease_seconds > 0,
        "poll_seconds": live.poll_seconds > 0,
        "max_segment_seconds": 2 <= live.max_segment_seconds <= 28,
        "max_lag_seconds": live.max_lag_seconds > 0,
        "language": live.language in ("", "zh", "en", "auto"),
        "phrase_threshold": 0 < live.phrase_threshold <= 1,
        "max_silence_seconds": live.max_silence_seconds > 0,
        "max_overtalk_seconds": live.max_overtalk_seconds > 0,
        "threads": live.threads >= 0,
        "window_seconds": 5 <= live.window_seconds <= 30,
    }
    for key, ok in checks.items():
        if not ok:
            raise SettingsError(f"live.{key}: out of range")
    agent = tuple(live.agent_phrases) + (_scorecard_forbidden(settings) if live.agent_scorecard_phrases else ())
    return LiveOptions(
        enabled=live.enabled,
        max_calls_per_worker=live.max_calls_per_worker,
        lease_s=float(live.lease_seconds),
        poll_s=float(live.poll_seconds),
        max_segment_s=float(live.max_segment_seconds),
        max_lag_s=float(live.max_lag_seconds),
        language=live.language or settings.qa.language,
        service_url=_service_url(settings),
        customer_phrases=tuple(live.customer_phrases),
        agent_phrases=agent,
        phrase_threshold=float(live.phrase_threshold),
        max_silence_s=float(live.max_silence_seconds),
        max_overtalk_s=float(live.max_overtalk_seconds),
        threads=int(live.threads),
        window_s=float(live.window_seconds),
    )


@dataclass(frozen=True)
class Utterance:
    """A channel's audio from origin_s on, holding speech spans (relative to the audio) that ended."""

    speaker: str
    origin_s: float
    samples: np.ndarray
    spans: list[Span]

    @property
    def end_s(self) -> float:
        return self.origin_s + self.spans[-1].end


class ChannelCutter:
    """One direction's audio in, finished utterances out; also says when its speaker last spoke."""

    def __init__(self, speaker: str, vad: VadOptions, padding_s: float, max_segment_s: float) -> None:
        self.speaker = speaker
        self.options = vad
        self._vad = webrtcvad.Vad(vad.aggressiveness)
        self._step = SAMPLE_RATE * vad.frame_ms // 1000 * 2  # bytes per VAD frame
        self._frame_s = vad.frame_ms / 1000
        self._gap_frames = max(1, vad.merge_gap_ms // vad.frame_ms)
        self._keep_frames = max(1, round(padding_s / self._frame_s))  # pre-roll kept while nobody speaks
        self._max_frames = round(max_segment_s / self._frame_s)
        self._pending = bytearray()
        self._buf = bytearray()
        self._flags: list[bool] = []
        self._origin_frames = 0  # VAD frames cut off before _buf
        self.last_speech_s: float | None = None  # tap time of the end of the last speech frame

    @property
    def now_s(self) -> float:
        return (self._origin_frames + len(self._flags)) * self._frame_s

    def feed(self, pcm: bytes) -> list[Utterance]:
        self._pending += pcm
        out = []
        while len(self._pending) >= self._step:
            frame = bytes(self._pending[: self._step])
            del self._pending[: self._step]
            speech = self._vad.is_speech(frame, SAMPLE_RATE)
            self._buf += frame
            self._flags.append(speech)
            if speech:
                self.last_speech_s = self.now_s
            if (utterance := self._maybe_cut()) is not None:
                out.append(utterance)
        return out

    def flush(self) -> Utterance | None:
        """At the end of the call: whatever speech is held, ended or not."""
        return self._cut() if any(self._flags) else None

    def _maybe_cut(self) -> Utterance | None:
        if not any(self._flags):
            self._trim(len(self._flags) - self._keep_frames)
            return None
        quiet = len(self._flags) - 1 - max(i for i, f in enumerate(self._flags) if f)
        if quiet >= self._gap_frames:
            return self._cut()
        if len(self._flags) >= self._max_frames:
            return self._cut(self._last_pause())
        return None

    def _last_pause(self) -> int:
        """Where to cut unbroken speech: in the middle of its last quiet run of VAD frames in the second half
        of the buffer (a breath between words, too short to end the utterance), so no word is cut in two;
        at the end when there is none."""
        flags, half = self._flags, len(self._flags) // 2
        end = next((i for i in range(len(flags) - 1, half, -1) if not flags[i]), None)
        if end is None:
            return len(flags)
        start = end
        while start > half and not flags[start - 1]:
            start -= 1
        return (start + end + 1) // 2

    def _cut(self, frames: int | None = None) -> Utterance | None:
        """The first `frames` VAD frames held (all by default) as an utterance; the rest stays."""
        frames = len(self._flags) if frames is None else frames
        samples = np.frombuffer(bytes(self._buf[: frames * self._step]), "<i2").copy()
        spans = spans_from_flags(samples, self._flags[:frames], self.options)
        origin = self._origin_frames * self._frame_s
        self._trim(frames)
        return Utterance(self.speaker, origin, samples, spans) if spans else None

    def _trim(self, frames: int) -> None:
        if frames <= 0:
            return
        del self._buf[: frames * self._step]
        del self._flags[:frames]
        self._origin_frames += frames


def transcribe_utterance(model, utterance: Utterance, options: TranscribeOptions) -> list[TranscriptSegment]:
    """Whisper on one utterance the post-call way (30 s window, word alignment); segment times in tap time.

    The live path used this before qa.live_transcribe; bench/live_transcript_lag.py keeps it as its baseline."""
    channel = ChannelSpeech(utterance.speaker, utterance.samples, utterance.spans)
    return [
        TranscriptSegment(s.start + utterance.origin_s, s.end + utterance.origin_s, s.speaker, s.text, s.confidence)
        for s in transcribe_call(model, [channel], options)
    ]


@dataclass(frozen=True)
class Alert:
    kind: str  # "phrase" or "metric"
    speaker: str | None
    name: str  # the phrase, or the metric: long_silence, overtalk
    text: str


def phrase_alerts(segment: TranscriptSegment, options: LiveOptions) -> list[Alert]:
    """A configured phrase in what was said (tolerant matching, qa.matching, as the scorecard uses)."""
    phrases = {CUSTOMER: options.customer_phrases, AGENT: options.agent_phrases}.get(segment.speaker, ())
    match = find_phrase(segment.text, list(phrases), options.phrase_threshold) if phrases else None
    return [Alert("phrase", segment.speaker, match.phrase, segment.text)] if match else []


class LiveMetrics:
    """Long silence (nobody speaking) and overtalk (both at once), each alerted once per episode.

    A party counts as speaking until vad_merge_gap_ms after its last speech frame, so the pauses
    inside one utterance neither end an overtalk nor start a silence."""

    def __init__(self, options: LiveOptions, merge_gap_s: float) -> None:
        self.options = options
        self.gap_s = merge_gap_s
        self._silence_from = 0.0
        self._silence_alerted = False
        self._overtalk_from: float | None = None
        self._overtalk_alerted = False

    def _speaking(self, cutter: ChannelCutter, now: float) -> bool:
        return cutter.last_speech_s is not None and now - cutter.last_speech_s <= self.gap_s

    def update(self, agent: ChannelCutter, customer: ChannelCutter) -> list[Alert]:
        now = min(agent.now_s, customer.now_s)
        a, c = self._speaking(agent, now), self._speaking(customer, now)
        alerts = []
        if a or c:
            self._silence_from, self._silence_alerted = now, False
        elif not self._silence_alerted and now - self._silence_from > self.options.max_silence_s:
            self._silence_alerted = True
            alerts.append(Alert("metric", None, "long_silence",
                                f"nobody has spoken for {now - self._silence_from:.1f} s "
                                f"(bound {self.options.max_silence_s:g} s)"))
        if a and c:
            if self._overtalk_from is None:
                self._overtalk_from = now
            if not self._overtalk_alerted and now - self._overtalk_from > self.options.max_overtalk_s:
                self._overtalk_alerted = True
                alerts.append(Alert("metric", None, "overtalk",
                                    f"both parties have talked at once for {now - self._overtalk_from:.1f} s "
                                    f"(bound {self.options.max_overtalk_s:g} s)"))
        else:
            self._overtalk_from, self._overtalk_alerted = None, False
        return alerts
