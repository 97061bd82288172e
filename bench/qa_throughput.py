"""QA pipeline throughput against plain faster-whisper on the same recordings.

    .venv/bin/python bench/qa_throughput.py [--calls 4] [--rounds 3] [--threads 0] [--skip-five-minute]

Recordings: the first N English synthetic calls of tests/synth_calls.py
(stereo, espeak-ng voices), rendered into a temporary folder. Same model (the
configured qa.model, by default the bundled Whisper base), same compute type,
same CPU threads for both:

- ours: qa.pipeline.analyse + score: webrtcvad per channel, only the speech
  transcribed, each word attributed to its speaker, metrics and the sales
  scorecard;
- baseline: faster-whisper's WhisperModel.transcribe on the mono mix of each
  file with its default settings (beam 5, temperature fallback, conditioning
  on previous text), which yields no speaker at all. Its model is loaded as
  faster-whisper loads it (one worker using all the threads); ours splits
  the same threads into one-thread workers (qa.transcribe.load_whisper).

Prints wall and CPU seconds per audio minute for each and the ratio
baseline/ours (above 1: ours is faster), and the hang-up-to-score time of a
5-minute call (calls joined end to end, with the model already loaded in the
worker, as it is in a running worker): read, analyse and score. The machine
may be shared: each round runs ours, the baseline and the 5-minute call back
to back, so a round's ratio compares like with like; the summary gives the
median and the spread (min..max) over the rounds. One untimed call first
warms the model up for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synth_calls import CALLS, RATE, rendered, write_wav  # noqa: E402

from qa.audio import read_recording, to_float  # noqa: E402
from qa.model_files import resolve_model  # noqa: E402
from qa.pipeline import analyse, load_model, qa_options, score  # noqa: E402
from qa.scorecard import load_scorecard  # noqa: E402
from telesales.settings import load_settings  # noqa: E402


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
    parser.add_argument("--recordings", help="a folder of stereo WAVs to use instead of rendering the synthetic calls "
                        "(for a machine without espeak-ng, such as a GPU host; qa.device comes from settings)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TELESALES_DATA_DIR": str(Path(tmp) / "var")}  # TELESALES_QA_* apply
        if args.threads:
            env["TELESALES_QA_THREADS"] = str(args.threads)
        settings = load_settings(environ=env)
        english = [c for c in CALLS if c.language == "en"][: args.calls]
        if args.recordings:
            paths = sorted(Path(args.recordings).glob("*.wav"))[: args.calls]
        else:
            paths = [rendered(c, Path(tmp) / "calls")[0] for c in english]
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
