"""Applying a scorecard to a call: pure functions from transcript and metrics to check results and scores."""

from __future__ import annotations

from dataclasses import dataclass

from qa.matching import find_phrase
from qa.metrics import TalkMetrics
from qa.scorecard import Check, Scorecard
from qa.segments import UNKNOWN, TranscriptSegment


@dataclass(frozen=True)
class Call:
    """What the rules look at."""

    transcript: tuple[TranscriptSegment, ...]
    metrics: TalkMetrics
    speech_start: float | None  # first and last speech on any channel; None: no speech at all
    speech_end: float | None
    disposition: str | None = None


@dataclass(frozen=True)
class CheckResult:
    id: str
    category: str
    passed: bool | None  # None: the check does not apply to this call
    weight: float
    evidence: tuple[dict, ...]

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "passed": self.passed,
            "weight": self.weight,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class Score:
    checks: tuple[CheckResult, ...]
    categories: dict[str, float | None]  # 0..100; None where no check applied
    score: float | None  # None: unscorable (no speech at all)


def _said_by(segment: TranscriptSegment, speaker: str) -> bool:
    # On a mono recording nobody is known, so anyone may have said it.
    return speaker == "any" or segment.speaker in (speaker, UNKNOWN)


def _in_window(segment: TranscriptSegment, check: Check, call: Call) -> bool:
    if check.within_first_s is not None and segment.start > call.speech_start + check.within_first_s:
        return False
    return check.within_last_s is None or segment.end >= call.speech_end - check.within_last_s


def _candidates(check: Check, call: Call) -> list[tuple[TranscriptSegment, TranscriptSegment]]:
    """Each eligible segment alone, and joined with the speaker's next one (a phrase cut by a pause)."""
    own = [s for s in call.transcript if _said_by(s, check.speaker) and _in_window(s, check, call)]
    pairs = [(s, s) for s in own]
    pairs += [(a, b) for a, b in zip(own, own[1:], strict=False) if a.speaker == b.speaker]
    return pairs


def _evidence(first: TranscriptSegment, last: TranscriptSegment, match) -> dict:
    text = first.text if first is last else f"{first.text} {last.text}"
    return {
        "start": round(first.start, 2),
        "end": round(last.end, 2),
        "speaker": first.speaker,
        "text": text,
        "phrase": match.phrase,
        "heard": match.matched,
        "similarity": round(match.ratio, 2),
    }


def _find(check: Check, call: Call, phrases: tuple[str, ...]) -> dict | None:
    best = None
    for first, last in _candidates(check, call):
        text = first.text if first is last else f"{first.text} {last.text}"
        match = find_phrase(text, list(phrases), check.threshold)
        if match and (best is None or match.ratio > best[2].ratio):
            best = (first, last, match)
    return _evidence(*best) if best else None


def _window_words(check: Check) -> str:
    if check.within_first_s is not None:
        return f" in the first {check.within_first_s:g} s"
    if check.within_last_s is not None:
        return f" in the last {check.within_last_s:g} s"
    return ""


def _phrase_present(check: Check, call: Call) -> tuple[bool, tuple[dict, ...]]:
    found, missing = [], []
    for group in check.phrase_groups:
        hit = _find(check, call, group)
        if hit:
            found.append(hit)
        else:
            missing.append(group)
    if missing:
        wanted = "; ".join(" / ".join(g) for g in missing)
        note = {"missing": f"{check.speaker} said nothing like: {wanted}{_window_words(check)}"}
        return False, (*found, note)
    return True, tuple(found)


def _phrase_absent(check: Check, call: Call) -> tuple[bool, tuple[dict, ...]]:
    hits = [hit for group in check.phrase_groups if (hit := _find(check, call, group))]
    if hits:
        return False, tuple(hits)
    return True, ({"absent": f"{check.speaker} said none of: {' / '.join(p for g in check.phrase_groups for p in g)}"},)


def _metric(check: Check, call: Call) -> tuple[bool | None, tuple[dict, ...]]:
    evidence, passed = [], True
    for name, bound in check.bounds.items():
        value = getattr(call.metrics, name)
        if value is None:
            return None, ({"metric": name, "value": None, "reason": "not measurable on this recording"},)
        ok = (bound.min is None or value >= bound.min) and (bound.max is None or value <= bound.max)
        passed = passed and ok
        evidence.append({"metric": name, "value": round(value, 3), "min": bound.min, "max": bound.max})
    return passed, tuple(evidence)


_KINDS = {"phrase_present": _phrase_present, "phrase_absent": _phrase_absent, "metric": _metric}


def apply_check(check: Check, call: Call) -> CheckResult:
    if call.speech_start is None:
        passed, evidence = None, ({"reason": "no speech in the recording"},)
    elif check.dispositions and call.disposition not in check.dispositions:
        got = call.disposition or "none given"
        passed, evidence = None, ({"reason": f"applies to disposition {', '.join(check.dispositions)}; got {got}"},)
    else:
        passed, evidence = _KINDS[check.kind](check, call)
    return CheckResult(check.id, check.category, passed, check.weight, evidence)


def _category_scores(scorecard: Scorecard, results: tuple[CheckResult, ...]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {}
    for category in scorecard.categories:
        applied = [r for r in results if r.category == category and r.passed is not None]
        weight = sum(r.weight for r in applied)
        scores[category] = round(100 * sum(r.weight for r in applied if r.passed) / weight, 1) if weight else None
    return scores


def score_call(scorecard: Scorecard, call: Call) -> Score:
    results = tuple(apply_check(check, call) for check in scorecard.checks)
    categories = _category_scores(scorecard, results)
    weighted = [(scorecard.categories[c], s) for c, s in categories.items() if s is not None]
    total_weight = sum(w for w, _ in weighted)
    overall = round(sum(w * s for w, s in weighted) / total_weight, 1) if total_weight else None
    return Score(results, categories, overall)
