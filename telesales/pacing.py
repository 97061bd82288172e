"""Predictive pacing: how many lines to dial now so agents wait little and few answered calls find none free.

Each ringing line is answered with probability p (the campaign's recent connect
rate). With k agents free and L lines out, the answers X ~ Binomial(L, p); the
calls answered with no agent free are max(0, X - k). `lines_to_dial` adds lines
while the expected share of those, E[max(0, X - k)] / E[X], stays under the
target. `AdaptivePacer` recomputes the target every `recompute_seconds` (VICIdial
does it every 15 s) from the abandon rate measured so far: above the cap it
tightens, below it loosens back, so the campaign's rate is held under the cap.
Pure functions and a small class: the dialer and bench/dialer_sim.py share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_LINES_PER_AGENT = 10  # a ceiling whatever the estimate says (a bad estimate must not flood the trunk)


def _binomial_pmf(n: int, p: float) -> list[float]:
    if p <= 0:
        return [1.0] + [0.0] * n
    if p >= 1:
        return [0.0] * n + [1.0]
    log_p, log_q = math.log(p), math.log1p(-p)
    return [math.exp(math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * log_p + (n - x) * log_q)
            for x in range(n + 1)]


def expected_abandon_ratio(lines: int, free_agents: int, p: float) -> float:
    """E[answers beyond the free agents] / E[answers] for `lines` ringing lines."""
    if lines <= 0 or p <= 0:
        return 0.0
    pmf = _binomial_pmf(lines, p)
    over = sum((x - free_agents) * pmf[x] for x in range(free_agents + 1, lines + 1))
    return over / (lines * p)


def lines_to_dial(free_agents: int, ringing: int, connect_rate: float, target: float) -> int:
    """New lines to dial now, given the lines already ringing."""
    if free_agents <= 0:
        return 0
    ceiling = free_agents * MAX_LINES_PER_AGENT
    n = 0
    while ringing + n < ceiling and expected_abandon_ratio(ringing + n + 1, free_agents, connect_rate) <= target:
        n += 1
    # At least one line per free agent with nothing ringing for them: never worse than progressive.
    return max(n, free_agents - ringing, 0)


@dataclass
class AdaptivePacer:
    cap: float = 0.03  # the campaign's abandon-rate cap
    recompute_seconds: float = 15.0
    prior_connect_rate: float = 0.2  # until enough calls are seen
    factor: float = 1.0  # the share of the cap aimed at in the next stretch
    min_factor: float = 0.05
    _last_recompute: float | None = field(default=None, repr=False)
    connect_rate: float = 0.0

    def due(self, now: float) -> bool:
        """Whether recompute() would act now (so a caller can skip reading the totals)."""
        return self._last_recompute is None or now - self._last_recompute >= self.recompute_seconds

    def recompute(self, now: float, *, dials: int, answered: int, abandoned: int) -> None:
        """Every recompute_seconds: update the connect-rate estimate and the target from the totals
        (dials, answered, abandoned) of the measured period (30 days for the cap)."""
        if self._last_recompute is not None and now - self._last_recompute < self.recompute_seconds:
            return
        self._last_recompute = now
        # A prior worth 50 dials keeps the first minutes from swinging on a handful of calls.
        weight = 50
        self.connect_rate = (answered + self.prior_connect_rate * weight) / (dials + weight)
        rate = abandoned / answered if answered else 0.0
        if rate > self.cap:
            self.factor = max(self.min_factor, self.factor * 0.7)
        elif rate < self.cap * 0.8:
            self.factor = min(1.0, self.factor * 1.1)

    @property
    def target(self) -> float:
        return self.cap * self.factor

    def lines(self, free_agents: int, ringing: int, soon_free: int = 0) -> int:
        """soon_free: agents whose wrap-up ends before a call dialled now would be answered (a few
        seconds of ringing); counting them is what lets a predictive dialer beat progressive."""
        p = self.connect_rate or self.prior_connect_rate
        return lines_to_dial(free_agents + soon_free, ringing, p, self.target)
