"""A seat process that never records: the baseline of bench/concurrent_calls.py.

Same endpoint, same calls, same media through the bridge; only the two recording
taps per call and the WAV writing are left out. (Skipped by `make bench`: the
name starts with an underscore.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telephony import seat  # noqa: E402

seat.Seat._start_recording = lambda self, state: None

if __name__ == "__main__":
    sys.exit(seat.main())
