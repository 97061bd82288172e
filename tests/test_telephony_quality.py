"""The MOS estimate behind the line test's quality figures."""

from telephony.quality import call_quality, mos_estimate


def test_a_clean_local_call_scores_near_the_g711_ceiling():
    assert mos_estimate(rtt_ms=1, jitter_ms=1, loss_percent=0) > 4.3


def test_loss_and_delay_lower_the_score_in_order():
    clean = mos_estimate(20, 2, 0)
    lossy = mos_estimate(20, 2, 5)
    slow = mos_estimate(600, 40, 0)
    assert clean > lossy > 1 and clean > slow > 1


def test_quality_counts_loss_against_the_packets_expected():
    q = call_quality(rx_packets=95, rx_lost=5, jitter_usec=2500, rtt_usec=40_000)
    assert (q.loss_percent, q.jitter_ms, q.rtt_ms) == (5.0, 2.5, 40.0)
    assert call_quality(0, 0, 0, 0).loss_percent == 0
