"""The live predictive dialer's pacing decision (telesales/predictive.py), without seats."""

from telesales.pacing import AdaptivePacer
from telesales.predictive import CampaignPace, wanted_lines


def test_under_the_cap_the_dial_level_exceeds_the_free_agents():
    pace = CampaignPace(AdaptivePacer(cap=0.03))
    assert wanted_lines(pace, 3, 0, can_abandon=True) == 7  # 20 % prior connect rate
    assert wanted_lines(pace, 3, 7, can_abandon=True) == 0  # those lines are still ringing
    assert wanted_lines(pace, 0, 0, can_abandon=True) == 0


def test_over_the_30_day_cap_it_dials_one_line_per_free_agent_until_back_under():
    pace = CampaignPace(AdaptivePacer(cap=0.03, recompute_seconds=15))
    pace.pacer.recompute(0, dials=500, answered=100, abandoned=5)  # 5 % over 30 days
    pace.over_cap = True
    assert wanted_lines(pace, 3, 0, can_abandon=True) == 3
    assert wanted_lines(pace, 3, 2, can_abandon=True) == 1
    pace.over_cap = False
    assert wanted_lines(pace, 3, 0, can_abandon=True) > 3


def test_without_an_abandon_message_it_never_overdials():
    pace = CampaignPace(AdaptivePacer(cap=0.03))
    assert wanted_lines(pace, 3, 0, can_abandon=False) == 3


def test_agents_near_the_end_of_a_typical_wrap_up_count_as_soon_free():
    from telesales.predictive import soon_free_agents

    assert soon_free_agents([3.0, 12.5, 25.0], typical_wrap_up=20.0, lead_seconds=8.0) == 2
    assert soon_free_agents([3.0, 12.5, 25.0], typical_wrap_up=None) == 0  # no history: none
    pace = CampaignPace(AdaptivePacer(cap=0.03))
    assert wanted_lines(pace, 0, 0, can_abandon=True, soon_free=2) > 0
    assert wanted_lines(pace, 0, 0, can_abandon=False, soon_free=2) == 0  # progressive counts only the free
