"""The one audio frame format inside the system: 16 kHz, mono, signed 16-bit, 20 ms."""

SAMPLE_RATE = 16_000
FRAME_MS = 20
SAMPLE_BYTES = 2
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
SILENCE = bytes(FRAME_BYTES)
