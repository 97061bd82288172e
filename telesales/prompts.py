"""Recorded prompts the seats play (the predictive dialer's abandon message): espeak-ng, cached.

Made once per text under `<data_dir>/prompts/` at the seats' 16 kHz; the cache is keyed by the
text, so changing the setting makes a new file. A configured WAV is used as it is.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from telesales.speech_files import speak


class PromptError(RuntimeError):
    """The prompt cannot be made (no espeak-ng, or it failed)."""


async def spoken_prompt(folder: Path, name: str, text: str) -> Path:
    """A WAV of `text`; PromptError when it cannot be synthesised."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = folder / f"{name}-{digest}.wav"
    if path.exists():
        return path
    if shutil.which("espeak-ng") is None:
        raise PromptError("espeak-ng is not installed (apt-get install espeak-ng)")
    if not await speak(text, path):
        raise PromptError("espeak-ng failed to speak the prompt")
    return path
