"""One speaker-labelled transcript from the channels' segments, ordered by time."""

from __future__ import annotations

from qa.segments import TranscriptSegment


def merge(*channels: list[TranscriptSegment]) -> tuple[TranscriptSegment, ...]:
    """All segments ordered by start; at the same instant the earlier-ending one first."""
    return tuple(sorted((s for ch in channels for s in ch), key=lambda s: (s.start, s.end, s.speaker)))
