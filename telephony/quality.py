"""Call quality from RTCP: loss, jitter, round trip, and a MOS estimate (ITU-T G.107 E-model, simplified)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallQuality:
    rx_packets: int
    rx_lost: int
    loss_percent: float
    jitter_ms: float
    rtt_ms: float
    mos: float


def mos_estimate(rtt_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """A listening-quality MOS from 1 to 4.5 for a G.711-class call.

    Jitter counts double (the jitter buffer adds about that much delay), plus
    10 ms of codec delay; R drops by 2.5 per percent of loss.
    """
    latency = rtt_ms / 2 + 2 * jitter_ms + 10
    r = 93.2 - latency / 40 if latency < 160 else 93.2 - (latency - 120) / 10
    r = max(0.0, min(100.0, r - 2.5 * loss_percent))
    return round(1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r), 2)


def call_quality(rx_packets: int, rx_lost: int, jitter_usec: float, rtt_usec: float) -> CallQuality:
    expected = rx_packets + rx_lost
    loss = 100.0 * rx_lost / expected if expected else 0.0
    jitter_ms, rtt_ms = jitter_usec / 1000, rtt_usec / 1000
    return CallQuality(rx_packets, rx_lost, round(loss, 2), round(jitter_ms, 2), round(rtt_ms, 2),
                       mos_estimate(rtt_ms, jitter_ms, loss))
