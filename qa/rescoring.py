"""A score recomputed from check results (after a reviewer changed some): the same arithmetic as qa/scoring.py.

Each category scores the weighted share of its applicable checks that
passed; the call's score is the category scores weighted by the
scorecard's category weights. A check with passed None does not apply.
"""

from __future__ import annotations

from pathlib import Path

from qa.scorecard import load_scorecard


def rescore(checks: list[dict], category_weights: dict[str, float]) -> tuple[dict[str, float | None], float | None]:
    categories: dict[str, float | None] = {}
    for category in category_weights:
        applied = [c for c in checks if c.get("category") == category and c.get("passed") is not None]
        weight = sum(float(c.get("weight", 1.0)) for c in applied)
        passed = sum(float(c.get("weight", 1.0)) for c in applied if c.get("passed"))
        categories[category] = round(100 * passed / weight, 1) if weight else None
    weighted = [(category_weights[c], s) for c, s in categories.items() if s is not None]
    total = sum(w for w, _ in weighted)
    score = round(sum(w * s for w, s in weighted) / total, 1) if total else None
    return categories, score


def rescore_with_scorecard(config_dir: Path):
    """rescore(scorecard name, checks) for crm/reviews.py, with the category weights of the named scorecard."""

    def run(scorecard: str, checks: list[dict]):
        return rescore(checks, load_scorecard(scorecard, config_dir).categories)

    return run
