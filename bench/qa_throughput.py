"""QA pipeline throughput against plain faster-whisper on the same recordings.

    .venv/bin/python bench/qa_throughput.py [--calls 4] [--rounds 3] [--threads 0] [--skip-five-minute] [--dense]

Recordings (rendered into a temporary folder; both sides get the same files):
the first N English scripts of tests/synth_calls.py (good_sale,
good_callback, no_greeting, no_introduction), spoken by espeak-ng, stereo at
16 kHz, left = agent, right = customer, laid out like a call-center call
(call_center_version below, seeded by the call's name, so every run renders
the same audio):

- each channel holds only its own party: one speaks while the other
  listens, as a seat records them;
- 0.6-1.6 s between turns (line latency, the agent reading the screen or
  typing), 0.3-0.8 s when one party goes on, 2-4 s of thinking before the
  customer answers a question or the price offer; talking over stays
  talking over;
- one hold per call, at the first agent line past the middle: the agent
  says "Let me check that for you, please hold for a moment.", then 20-40 s
  in which neither party speaks, then "Thank you for holding.";
- white line noise on both channels throughout (RMS 30, about -60 dBFS):
  no stretch is digital silence.

The 4 calls last 98-115 s (6.5 audio minutes), about half of it speech on
one channel or the other. --dense uses the test scripts as they are instead
(0.4-0.7 s between lines, no hold, no noise: nearly all speech, the least
voice activity detection can save; 3.9 audio minutes).

Same model (the configured qa.model, by default the bundled Whisper base),
same compute type, same CPU threads for both:

- ours: qa.pipeline.analyse + score: webrtcvad per channel, only the speech
  transcribed, each word attributed to its speaker, metrics and the sales
  scorecard;
- baseline: faster-whisper's WhisperModel.transcribe on the mono mix of each
  file with its default settings (beam 5, temperature fallback, conditioning
  on previous text, no VAD filter), which yields no speaker at all. Its model
  is loaded as faster-whisper loads it (one worker using all the threads);
  ours splits the same threads into one-thread workers
  (qa.transcribe.load_whisper).

Prints wall and CPU seconds per audio minute for each and the ratio
baseline/ours (above 1: ours is faster), and the hang-up-to-score time of a
5-minute call (the same calls joined end to end and cut at 300 s, with the
model already loaded in the worker, as it is in a running worker): read,
analyse and score. The machine may be shared: each round runs ours, the
baseline and the 5-minute call back to back, so a round's ratio compares
like with like; the summary gives the median and the spread (min..max) over
the rounds. One untimed call first warms the model up for both.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synth_calls import CALLS, RATE, Line, SynthCall, rendered, write_wav  # noqa: E402

from qa.audio import read_recording, to_float  # noqa: E402
from qa.model_files import resolve_model  # noqa: E402
from qa.pipeline import analyse, load_model, qa_options, score  # noqa: E402
from qa.scorecard import load_scorecard  # noqa: E402
from telesales.settings import load_settings  # noqa: E402

TURN_GAP_S = (0.6, 1.6)  # the other party answers: line latency, reading the screen, typing
SAME_SPEAKER_GAP_S = (0.3, 0.8)  # one party goes on after a breath
THINKING_PAUSE_S = (2.0, 4.0)  # the customer thinks before answering a question or an offer
HOLD_S = (20.0, 40.0)  # the agent puts the customer on hold to look something up
NOISE_RMS = 30  # line noise on both channels, about -60 dBFS: a real line is never digital silence
HOLD_ASK = "Let me check that for you, please hold for a moment."
HOLD_BACK = "Thank you for holding."


def call_center_version(call: SynthCall) -> SynthCall:
    """The call's script with the pauses of a real call-center call and one hold in the middle (seeded by name)."""
    rng = random.Random(call.name)
    middle = len(call.lines) // 2
    hold_at = next(i for i in range(middle, len(call.lines)) if call.lines[i].speaker == "agent")
    lines = []
    for i, line in enumerate(call.lines):
        previous = call.lines[i - 1] if i else None
        if i == hold_at:  # the agent asks the customer to hold, comes back, then says the line
            lines.append(Line("agent", HOLD_ASK, rng.uniform(*TURN_GAP_S)))
            lines.append(Line("agent", HOLD_BACK, rng.uniform(*HOLD_S)))
        if previous is None:
            gap = line.gap
        elif line.gap < 0:
            gap = line.gap  # talking over stays talking over
        elif previous.speaker == line.speaker:
            gap = rng.uniform(*SAME_SPEAKER_GAP_S)
        elif line.speaker == "customer" and ("?" in previous.text or "percent" in previous.text):
            gap = rng.uniform(*THINKING_PAUSE_S)
        else:
            gap = rng.uniform(*TURN_GAP_S)
        lines.append(Line(line.speaker, line.text, round(gap, 2), line.say))
    return SynthCall(f"{call.name}_cc", tuple(lines), call.disposition, call.language, call.expected_failures)


def with_line_noise(path: Path, seed: int) -> Path:
    """A copy of the stereo recording with NOISE_RMS of white noise added to both channels."""
    rec = read_recording(path)
    rng = np.random.default_rng(seed)
    noisy = [np.clip(c.astype(np.int32) + rng.normal(0, NOISE_RMS, len(c)).astype(np.int32), -32768, 32767)
             .astype(np.int16) for c in rec.channels]
    out = path.with_name(path.stem + "-noisy.wav")
    write_wav(out, noisy)
    return out


def recordings(count: int, folder: Path, dense: bool) -> list[Path]:
    english = [c for c in CALLS if c.language == "en"][:count]
    if dense:
        return [rendered(c, folder)[0] for c in english]
    return [with_line_noise(rendered(call_center_version(c), folder)[0], i) for i, c in enumerate(english)]


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def ours(paths, model, options, scorecard) -> tuple[float, float]:
    with Clock() as clock:
        for path in paths:
            score(analyse(read_recording(path), model, options), scorecard, "SALE")
    return clock.wall, clock.cpu


def baseline_model(settings):
    """The same model files, compute type and threads, loaded the way faster-whisper does by default."""
    from faster_whisper import WhisperModel

    qa = settings.qa
    return WhisperModel(
        resolve_model(qa.model, settings.data_dir),
        device=qa.device,
        compute_type=qa.compute_type,
        cpu_threads=qa.threads or (os.cpu_count() or 1),
        local_files_only=True,
    )


def baseline(paths, model) -> tuple[float, float]:
    with Clock() as clock:
        for path in paths:
            rec = read_recording(path)
            mix = (to_float(rec.channels[0]) + to_float(rec.channels[1])) / 2
            list(model.transcribe(mix)[0])
    return clock.wall, clock.cpu


def five_minute_call(paths, folder: Path) -> Path:
    recordings = [read_recording(p) for p in paths]
    channels = [[], []]
    while sum(len(c) for c in channels[0]) < 300 * RATE:
        for rec in recordings:
            for i in (0, 1):
                channels[i].append(rec.channels[i])
    joined = [np.concatenate(c)[: 300 * RATE] for c in channels]
    path = folder / "five-minutes.wav"
    write_wav(path, joined)
    return path


def _spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    ordered = sorted(values)
    return (
        f"{statistics.median(ordered):.{digits}f}{unit} (min {ordered[0]:.{digits}f}{unit}, "
        f"max {ordered[-1]:.{digits}f}{unit}, {len(ordered)} rounds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: qa.threads)")
    parser.add_argument("--skip-five-minute", action="store_true")
    parser.add_argument("--dense", action="store_true", help="the test scripts as they are: nearly all speech, "
                        "0.4-0.7 s between lines, no hold, no line noise (the least VAD can save)")
    parser.add_argument("--recordings", help="a folder of stereo WAVs to use instead of rendering the synthetic calls "
                        "(for a machine without espeak-ng, such as a GPU host; qa.device comes from settings)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TELESALES_DATA_DIR": str(Path(tmp) / "var")}  # TELESALES_QA_* apply
        env.setdefault("TELESALES_QA_NICE", "0")  # the baseline's priority: qa.nice would put ours behind any load
        if args.threads:
            env["TELESALES_QA_THREADS"] = str(args.threads)
        settings = load_settings(environ=env)
        if args.recordings:
            paths = sorted(Path(args.recordings).glob("*.wav"))[: args.calls]
        else:
            paths = recordings(args.calls, Path(tmp) / "calls", args.dense)
        minutes = sum(read_recording(p).duration_s for p in paths) / 60
        five = None if args.skip_five_minute else five_minute_call(paths, Path(tmp))
        with Clock() as load:
            model = load_model(settings)
        plain = baseline_model(settings)
        options, scorecard = qa_options(settings.qa), load_scorecard("sales", settings.config_dir)
        print(
            f"model {settings.qa.model or 'bundled whisper-base'} on {settings.qa.device} {settings.qa.compute_type}, "
            f"threads {settings.qa.threads or 'all'} (of {os.cpu_count()} cores), loaded in {load.wall:.1f} s"
        )
        print(f"load average {Path('/proc/loadavg').read_text().strip()}")
        print(f"{len(paths)} stereo calls, {minutes:.2f} audio minutes; {args.rounds} rounds")
        ours(paths[:1], model, options, scorecard)  # warm-up, untimed
        baseline(paths[:1], plain)

        walls, cpus, fives = [], [], []
        for round_no in range(1, args.rounds + 1):
            ours_wall, ours_cpu = ours(paths, model, options, scorecard)
            base_wall, base_cpu = baseline(paths, plain)
            walls.append(base_wall / ours_wall)
            cpus.append(base_cpu / ours_cpu)
            print(f"round {round_no}: {'':16} {'wall s/audio min':>17} {'CPU s/audio min':>16}")
            print(f"  {'ours (VAD + per speaker)':28} {ours_wall / minutes:17.2f} {ours_cpu / minutes:16.2f}")
            print(f"  {'faster-whisper mono mix':28} {base_wall / minutes:17.2f} {base_cpu / minutes:16.2f}")
            print(f"  load average {Path('/proc/loadavg').read_text().split()[0]}")
            print(f"  ratio baseline/ours: wall {walls[-1]:.2f}x, CPU {cpus[-1]:.2f}x")
            if five is not None:
                fives.append(ours([five], model, options, scorecard))
                print(f"  5-minute call, hang-up to score: {fives[-1][0]:.1f} s wall, {fives[-1][1]:.1f} s CPU")

        print("summary (goal: ratio at least 2x, 5-minute call scored within 30 s of hang-up)")
        print(f"  speed-up over plain faster-whisper, wall: {_spread(walls, 'x')}")
        print(f"  speed-up over plain faster-whisper, CPU:  {_spread(cpus, 'x')}")
        if fives:
            print(f"  5-minute call, hang-up to score, wall:    {_spread([w for w, _ in fives], ' s', 1)}")


if __name__ == "__main__":
    main()
