"""Predictive pacing: lines to dial for the free agents, and the target adapting to the abandon rate."""

import pytest

from telesales.pacing import AdaptivePacer, expected_abandon_ratio, lines_to_dial


def test_lines_up_to_the_free_agents_never_abandon():
    assert expected_abandon_ratio(5, 5, 0.9) == 0.0
    assert expected_abandon_ratio(6, 5, 0.9) > 0.0


def test_a_low_connect_rate_dials_several_lines_per_free_agent():
    n = lines_to_dial(free_agents=10, ringing=0, connect_rate=0.2, target=0.03)
    assert 20 < n < 60
    assert expected_abandon_ratio(n, 10, 0.2) <= 0.03 < expected_abandon_ratio(n + 1, 10, 0.2)


def test_ringing_lines_count_and_no_free_agent_means_no_dial():
    assert lines_to_dial(10, 0, 0.2, 0.03) > lines_to_dial(10, 15, 0.2, 0.03)
    assert lines_to_dial(0, 0, 0.2, 0.03) == 0


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.95])
def test_never_fewer_lines_than_progressive_dialing(p):
    assert lines_to_dial(4, 1, p, 0.0) == 3


def test_the_target_tightens_above_the_cap_and_loosens_below_it():
    pacer = AdaptivePacer(cap=0.03)
    pacer.recompute(0, dials=1000, answered=200, abandoned=12)  # 6 %
    assert pacer.factor < 1 and pacer.target < 0.03
    tight = pacer.lines(10, 0)
    pacer.recompute(5, dials=1000, answered=200, abandoned=0)  # too soon: unchanged
    assert pacer.lines(10, 0) == tight
    for t in range(1, 20):
        pacer.recompute(15 * t, dials=2000, answered=400, abandoned=2)
    assert pacer.factor == 1.0 and pacer.lines(10, 0) > tight
    assert pacer.connect_rate == pytest.approx(0.2, abs=0.01)
