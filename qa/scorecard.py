"""Scorecards: config/scorecards/<name>.toml read into frozen dataclasses and validated.

A scorecard has categories with weights and checks; each check belongs to a
category, has a weight within it and a kind:

- phrase_present: the speaker says any of `phrases` (or, with `all_of`, one
  phrasing from every group) within the first `within_first_s` or the last
  `within_last_s` seconds of the conversation;
- phrase_absent: nobody (or the speaker) says any of `phrases`;
- metric: every metric named in `bounds` lies within its min/max.

`dispositions` limits a check to calls wrapped up with one of those codes.
The version is a hash of the file, so a stored score names exactly the rules
that made it.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from crm.errors import UserError
from qa.metrics import TalkMetrics

KINDS = ("phrase_present", "phrase_absent", "metric")
SPEAKERS = ("agent", "customer", "any")
METRICS = tuple(f.name for f in fields(TalkMetrics))


class ScorecardError(UserError):
    error_id = "bad_scorecard"


@dataclass(frozen=True)
class Bound:
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Check:
    id: str
    category: str
    kind: str
    weight: float = 1.0
    description: str = ""
    speaker: str = "agent"
    phrase_groups: tuple[tuple[str, ...], ...] = ()
    within_first_s: float | None = None
    within_last_s: float | None = None
    threshold: float = 0.8  # similarity 0..1 a phrasing needs to count as said
    bounds: dict[str, Bound] = field(default_factory=dict)
    dispositions: tuple[str, ...] = ()  # empty: every call


@dataclass(frozen=True)
class Scorecard:
    name: str
    version: str
    categories: dict[str, float]
    checks: tuple[Check, ...]


def _fail(where: str, message: str) -> None:
    raise ScorecardError(f"scorecard {where}: {message}")


def _phrase_groups(where: str, raw: dict) -> tuple[tuple[str, ...], ...]:
    groups = raw.get("all_of") or ([raw["phrases"]] if "phrases" in raw else [])
    if not groups or not all(isinstance(g, list) and g and all(isinstance(p, str) for p in g) for g in groups):
        _fail(where, "needs `phrases` (a list of strings) or `all_of` (a list of such lists)")
    return tuple(tuple(g) for g in groups)


def _bounds(where: str, raw: dict) -> dict[str, Bound]:
    bounds = raw.get("bounds")
    if not isinstance(bounds, dict) or not bounds:
        _fail(where, "a metric check needs `bounds`, e.g. bounds.overtalk_s = { max = 3.0 }")
    out = {}
    for metric, limits in bounds.items():
        if metric not in METRICS:
            _fail(where, f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if not isinstance(limits, dict) or not set(limits) <= {"min", "max"} or not limits:
            _fail(where, f"bounds.{metric} must be a table with min and/or max")
        out[metric] = Bound(limits.get("min"), limits.get("max"))
    return out


_KNOWN_KEYS = {
    "id", "category", "kind", "weight", "description", "speaker", "phrases", "all_of",
    "within_first_s", "within_last_s", "threshold", "bounds", "dispositions",
}  # fmt: skip


def _check(raw: dict, categories: dict[str, float]) -> Check:
    where = f"check {raw.get('id', '?')!r}"
    if unknown := set(raw) - _KNOWN_KEYS:
        _fail(where, f"unknown keys {sorted(unknown)}")
    if raw.get("kind") not in KINDS:
        _fail(where, f"kind must be one of {', '.join(KINDS)}")
    if raw.get("category") not in categories:
        _fail(where, f"category {raw.get('category')!r} is not in [categories]")
    if raw.get("speaker", "agent") not in SPEAKERS:
        _fail(where, f"speaker must be one of {', '.join(SPEAKERS)}")
    phrase_kind = raw["kind"] != "metric"
    return Check(
        id=raw["id"],
        category=raw["category"],
        kind=raw["kind"],
        weight=float(raw.get("weight", 1.0)),
        description=raw.get("description", ""),
        speaker=raw.get("speaker", "agent"),
        phrase_groups=_phrase_groups(where, raw) if phrase_kind else (),
        within_first_s=raw.get("within_first_s"),
        within_last_s=raw.get("within_last_s"),
        threshold=float(raw.get("threshold", 0.8)),
        bounds={} if phrase_kind else _bounds(where, raw),
        dispositions=tuple(raw.get("dispositions", ())),
    )


def parse_scorecard(name: str, text: str) -> Scorecard:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScorecardError(f"scorecard {name}: not valid TOML: {e}") from None
    categories = {k: float(v["weight"]) for k, v in raw.get("categories", {}).items()}
    if not categories:
        _fail(name, "needs [categories.<name>] tables with a weight")
    checks = tuple(_check(c, categories) for c in raw.get("checks", []))
    ids = [c.id for c in checks]
    if len(set(ids)) != len(ids) or not ids:
        _fail(name, "needs [[checks]] with unique ids")
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Scorecard(raw.get("name", name), version, categories, checks)


def load_scorecard(name_or_path: str, config_dir: Path) -> Scorecard:
    """A scorecard by name (config/scorecards/<name>.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = config_dir / "scorecards" / f"{name_or_path}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        known = sorted(p.stem for p in (config_dir / "scorecards").glob("*.toml"))
        raise ScorecardError(f"no scorecard {name_or_path!r}; known: {', '.join(known)}") from None
    return parse_scorecard(path.stem, text)
