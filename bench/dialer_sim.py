"""Predictive pacing against progressive dialing, through the real hopper, gates and wrap-ups.

    .venv/bin/python bench/dialer_sim.py [--agents 20] [--connect-rate 0.2] [--minutes 60] [--seed 7]

Starts its own embedded PostgreSQL in a temporary folder. Each run gets a fresh
database with one campaign of generated leads and simulates a shift on a
simulated clock (1 s steps): every dial is a real crm.hopper.next_lead pick (the
compliance gates included) and a real crm.calls row; every outcome a real
crm.dispositions wrap-up (NA, B, NI or INTERESTED; DROP for a call answered with
no agent free, which the hopper then holds back 72 h). Answers, ring, talk and
wrap-up times are drawn from the distributions below.

- baseline: progressive, one line per free agent;
- ours: predictive, the live dialer's decision (telesales.predictive.wanted_lines over
  telesales.pacing.AdaptivePacer: 3 % abandon cap, recomputed every 15 s, progressive while over the cap).
  Agents about to be free count as free: `--soon-free live` (default) estimates them as the live
  dialer does (telesales.predictive.soon_free_agents: wrap-ups that have lasted about the median);
  `oracle` counts those whose simulated wrap-up truly ends within 8 s; `none` counts none.

Prints agent occupancy ((talk + wrap-up) / agent time) and abandon rate
(abandoned / answered) per 15-minute window and overall for both, and the ratio of
the occupancies. Goal: abandon rate <= 3 % with occupancy >= 80 % at a 20 %
connect rate and 20 agents.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import heapq
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm import calls as call_store  # noqa: E402
from crm import db, hopper  # noqa: E402
from crm.dispositions import record_disposition  # noqa: E402
from crm.dispositions_catalog import load_catalog, sync_catalog  # noqa: E402
from telesales.pacing import AdaptivePacer  # noqa: E402
from telesales.predictive import SOON_FREE_LEAD_S, CampaignPace, soon_free_agents, wanted_lines  # noqa: E402
from telesales.settings import CONFIG_DIR  # noqa: E402

START = dt.datetime(2026, 6, 10, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
WINDOW = 15 * 60
RULES = hopper.HopperRules(default_region="CN", default_time_zone="Asia/Shanghai")
WRAP = dict(payment_methods=["cash_on_delivery"], departments=["sales"], default_currency="CNY",
            ack_hours=24, resolve_hours=72)


@dataclass
class Window:
    busy_seconds: float = 0.0
    answered: int = 0
    abandoned: int = 0
    dials: int = 0


@dataclass
class Run:
    name: str
    agents: int
    windows: dict[int, Window] = field(default_factory=dict)
    dials: int = 0
    answered: int = 0
    abandoned: int = 0
    max_lines: int = 0

    def window(self, t: float) -> Window:
        return self.windows.setdefault(int(t // WINDOW), Window())


async def _setup(conn, leads: int) -> tuple[int, int]:
    campaign_id = await conn.fetchval(
        """insert into campaigns (name, dialing_mode, calling_window_start, calling_window_end)
           values ('sim', 'predictive', '00:00', '00:00') returning id""")
    dialer = await conn.fetchval(
        "insert into users (username, role, password_hash) values ('dialer', 'admin', '-') returning id")
    await conn.execute(
        """with c as (insert into customers (name) select 'lead ' || g from generate_series(1, $1) g returning id)
           insert into leads (campaign_id, customer_id, phone)
           select $2, id, '+86139' || lpad(id::text, 8, '0') from c""",
        leads, campaign_id)
    return campaign_id, dialer


async def simulate(url: str, name: str, args, pacer: CampaignPace | None) -> Run:
    rng = random.Random(args.seed)
    catalog = load_catalog(CONFIG_DIR / "dispositions.toml")
    conn = await db.connect(url)
    await sync_catalog(conn, catalog)
    campaign_id, dialer = await _setup(conn, args.leads)
    run = Run(name, args.agents)
    free_at = [0.0] * args.agents  # when each agent is free again
    wrap_from = [0.0] * args.agents  # when each agent's latest wrap-up starts
    wraps_seen: list[tuple[float, float]] = []  # (end, seconds) of every wrap-up
    events: list[tuple[float, int, str, str, int]] = []  # (t, seq, kind, call_id, lead_id)
    seq = 0
    ringing = 0

    async def wrap_up(code: str, call_id: str, lead_id: int, t: float) -> None:
        await record_disposition(conn, catalog, {"code": code, "call_id": call_id}, agent_id=None,
                                 now=START + dt.timedelta(seconds=t), **WRAP)
        await hopper.release(conn, lead_id)

    duration = args.minutes * 60
    t = 0.0
    while t < duration:
        now = START + dt.timedelta(seconds=t)
        while events and events[0][0] <= t:
            _, _, kind, call_id, lead_id = heapq.heappop(events)
            ringing -= 1
            if kind == "answer":
                run.answered += 1
                run.window(t).answered += 1
                free = [i for i, f in enumerate(free_at) if f <= t]
                if not free:  # no agent: the recorded message plays, the call ends
                    run.abandoned += 1
                    run.window(t).abandoned += 1
                    await wrap_up("DROP", call_id, lead_id, t)
                    continue
                # The longest-idle agent takes it.
                agent = min(free, key=lambda i: free_at[i])
                talk = min(rng.expovariate(1 / args.talk_mean) + 15, 900)
                wrap = rng.uniform(10, 30)
                free_at[agent] = t + talk + wrap
                wrap_from[agent] = t + talk
                wraps_seen.append((t + talk + wrap, wrap))
                _busy(run, t, talk + wrap)
                await wrap_up(rng.choice(("NI", "NI", "INTERESTED")), call_id, lead_id, t + talk + wrap)
            else:
                await wrap_up(kind, call_id, lead_id, t)
        free_agents = sum(1 for f in free_at if f <= t)
        if pacer is not None:
            if pacer.pacer.due(t):
                pacer.pacer.recompute(t, dials=run.dials, answered=run.answered, abandoned=run.abandoned)
                pacer.over_cap = run.answered > 0 and run.abandoned / run.answered > pacer.pacer.cap
            soon = _soon_free(args.soon_free, t, free_at, wrap_from, wraps_seen)
            wanted = wanted_lines(pacer, free_agents, ringing, can_abandon=True, soon_free=soon)
        else:
            wanted = max(0, free_agents - ringing)
        for _ in range(wanted):
            pick = await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=dialer, now=now, rules=RULES,
                                          exclusive=False)
            if pick is None:
                break
            call = await call_store.create_call(conn, direction="outbound", agent_id=None, lead_id=pick.lead_id,
                                                now=now)
            run.dials += 1
            run.window(t).dials += 1
            ringing += 1
            seq += 1
            if rng.random() < args.connect_rate:
                outcome = (t + rng.uniform(4, 15), "answer")
            elif rng.random() < 0.2:
                outcome = (t + rng.uniform(2, 5), "B")
            else:
                outcome = (t + 25, "NA")
            heapq.heappush(events, (outcome[0], seq, outcome[1], str(call["id"]), pick.lead_id))
        run.max_lines = max(run.max_lines, ringing)
        t += 1.0
    await conn.close()
    return run


def _soon_free(how: str, t: float, free_at: list[float], wrap_from: list[float],
               wraps_seen: list[tuple[float, float]]) -> int:
    if how == "oracle":
        return sum(1 for f in free_at if t < f <= t + SOON_FREE_LEAD_S)
    if how == "none":
        return 0
    # What the live dialer sees: the open wrap-ups' ages, and the median of the last day's finished ones.
    done = sorted(w for end, w in wraps_seen if t - 86400 < end <= t)
    typical = statistics.median(done) if len(done) >= 10 else None
    ages = [t - w for w, f in zip(wrap_from, free_at, strict=True) if w <= t < f]
    return soon_free_agents(ages, typical)


def _busy(run: Run, start: float, seconds: float) -> None:
    """Spread an agent's busy time over the 15-minute windows it falls in."""
    end = start + seconds
    while start < end:
        edge = (int(start // WINDOW) + 1) * WINDOW
        run.window(start).busy_seconds += min(end, edge) - start
        start = min(end, edge)


def report(run: Run, duration: float) -> tuple[float, float]:
    print(f"\n{run.name}: window  occupancy  abandon  dials  answered  abandoned")
    for index in sorted(run.windows):
        if index * WINDOW >= duration:
            continue
        w = run.windows[index]
        agent_seconds = run.agents * min(WINDOW, duration - index * WINDOW)
        abandon = w.abandoned / w.answered if w.answered else 0.0
        print(f"  {index * 15:>4}-{index * 15 + 15:<4} {w.busy_seconds / agent_seconds:9.1%} {abandon:8.2%} "
              f"{w.dials:6} {w.answered:9} {w.abandoned:10}")
    busy = sum(w.busy_seconds for i, w in run.windows.items() if i * WINDOW < duration)
    occupancy = min(busy, run.agents * duration) / (run.agents * duration)
    abandon = run.abandoned / run.answered if run.answered else 0.0
    print(f"  overall   {occupancy:9.1%} {abandon:8.2%} {run.dials:6} {run.answered:9} {run.abandoned:10}"
          f"   (most lines ringing at once: {run.max_lines})")
    return occupancy, abandon


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--connect-rate", type=float, default=0.2)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--talk-mean", type=float, default=90.0, help="mean talk seconds beyond the first 15")
    p.add_argument("--leads", type=int, default=0, help="default: enough for the shift")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--soon-free", choices=("live", "oracle", "none"), default="live",
                   help="how agents about to be free are counted (see the docstring)")
    args = p.parse_args()
    args.leads = args.leads or args.agents * args.minutes * 8

    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="tsdial"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        admin = await db.connect(server.get_uri())
        results = {}
        for name, pacer in (("baseline progressive", None), ("ours predictive", CampaignPace(AdaptivePacer(cap=0.03)))):
            dbname = name.split()[0]
            await admin.execute(f"create database {dbname}")
            url = db.with_database(server.get_uri(), dbname)
            conn = await db.connect(url)
            await db.migrate(conn)
            await conn.close()
            started = time.monotonic()
            run = await simulate(url, name, args, pacer)
            wall = time.monotonic() - started
            results[name] = report(run, args.minutes * 60)
            print(f"  ({run.dials} hopper picks and wrap-ups in {wall:.1f} s wall, "
                  f"{wall / max(run.dials, 1) * 1000:.1f} ms a dial)")
        await admin.close()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    (base_occ, _), (ours_occ, ours_abandon) = results.values()
    print(f"\noccupancy ratio ours/baseline: {ours_occ / base_occ:.2f} "
          f"({ours_occ:.1%} vs {base_occ:.1%}); our abandon rate {ours_abandon:.2%} (cap 3 %)")
    goal = ours_abandon <= 0.03 and ours_occ >= 0.8
    print("goal (abandon <= 3 %, occupancy >= 80 %):", "met" if goal else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
