"""`telesales qa score FILE.wav`: transcribe and score one recording, print text or JSON."""

from __future__ import annotations

import json
import logging
import sys

from qa.audio import RecordingError, read_recording
from qa.model_files import ModelFilesError
from qa.pipeline import analyse, load_model, qa_options, result_json, score
from qa.scorecard import ScorecardError, load_scorecard


def _print_text(result: dict) -> None:
    score = "unscorable (no speech)" if result["score"] is None else f"{result['score']:g}/100"
    print(f"duration {result['duration_s']:.1f} s, score {score}")
    for name, value in result["categories"].items():
        print(f"  {name:16} {'-' if value is None else f'{value:g}'}")
    for check in result["checks"]:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[check["passed"]]
        print(f"  [{mark}] {check['id']}: {json.dumps(check['evidence'], ensure_ascii=False)}")
    print("transcript:")
    for seg in result["transcript"]:
        print(f"  {seg['start']:7.2f} {seg['end']:7.2f} {seg['speaker']:8} {seg['text']}")


def score_command(args, settings) -> int:
    """Exit 0 when scored (or unscorable), 2 for a file or scorecard the user must fix, 1 for a missing model."""
    # faster-whisper logs every transcribe call at INFO; on a terminal that buries the result.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    try:
        options = qa_options(settings.qa)
        scorecard = load_scorecard(args.scorecard or settings.qa.scorecard, settings.config_dir)
        recording = read_recording(args.file)
        model = load_model(settings)
    except (RecordingError, ScorecardError) as e:
        print(f"telesales: {e.message}", file=sys.stderr)
        return 2
    except ModelFilesError as e:
        print(f"telesales: {e}", file=sys.stderr)
        return 1
    analysis = analyse(recording, model, options)
    for warning in analysis.warnings:
        print(f"telesales: warning: {warning}", file=sys.stderr)
    result = result_json(analysis, score(analysis, scorecard, args.disposition))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        _print_text(result)
    return 0
