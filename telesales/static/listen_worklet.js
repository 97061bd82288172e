// Audio worklets of the supervisor listen page (telesales/static/listen.js).
// The AudioContext runs at 16 kHz, the rate of the seat's frames, so nothing is resampled here.

const FRAME = 320;        // samples in 20 ms at 16 kHz
const RECORD = 641;       // bytes of one record on the WebSocket: direction byte + 640 bytes of PCM
const PREBUFFER = 3;      // frames (60 ms) a direction waits for before it plays, after a start or a gap
const MAX_QUEUED = 20;    // frames (400 ms): beyond this the oldest go, so delay never builds up
const CAPTURE_FRAMES = 6000;  // 120 s per direction kept for capture()

// Plays both directions (0 customer, 1 agent side) mixed, each through its own small jitter buffer,
// and keeps a copy of what it played per direction for the page's capture() (tests read it).
class ListenPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queues = [[], []];
    this.pos = [0, 0];
    this.playing = [false, false];
    this.captured = [[], []];
    this.dropped = 0;
    this.underruns = 0;
    this.port.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) this.push(e.data);
      else if (e.data && e.data.type === "capture") this.sendCapture();
    };
  }

  push(buffer) {
    const bytes = new Uint8Array(buffer);
    for (let at = 0; at + RECORD <= bytes.length; at += RECORD) {
      const dir = bytes[at] === 1 ? 1 : 0;
      // slice: the PCM starts at an odd offset, and an Int16Array needs an even one
      const frame = new Int16Array(buffer.slice(at + 1, at + RECORD));
      const q = this.queues[dir];
      q.push(frame);
      if (q.length > MAX_QUEUED) {
        q.shift();
        this.pos[dir] = 0;
        this.dropped++;
      }
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    for (let dir = 0; dir < 2; dir++) this.mix(out, dir);
    return true;
  }

  mix(out, dir) {
    const q = this.queues[dir];
    if (!this.playing[dir]) {
      if (q.length < PREBUFFER) return;
      this.playing[dir] = true;
    }
    for (let i = 0; i < out.length; i++) {
      if (q.length === 0) {
        this.playing[dir] = false;
        this.underruns++;
        return;
      }
      const frame = q[0];
      out[i] += frame[this.pos[dir]] / 32768;
      if (++this.pos[dir] === FRAME) {
        q.shift();
        this.pos[dir] = 0;
        const kept = this.captured[dir];
        kept.push(frame);
        if (kept.length > CAPTURE_FRAMES) kept.shift();
      }
    }
  }

  sendCapture() {
    const join = (frames) => {
      const all = new Int16Array(frames.length * FRAME);
      frames.forEach((f, n) => all.set(f, n * FRAME));
      return all.buffer;
    };
    const customer = join(this.captured[0]);
    const agent = join(this.captured[1]);
    this.port.postMessage({type: "capture", customer, agent, dropped: this.dropped, underruns: this.underruns},
                          [customer, agent]);
  }
}

// The supervisor's microphone as 20 ms frames of 16-bit PCM, posted to the page for the WebSocket.
class MicSender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(FRAME);
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      const s = Math.max(-1, Math.min(1, input[i]));
      this.frame[this.n++] = s < 0 ? s * 32768 : s * 32767;
      if (this.n === FRAME) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("listen-player", ListenPlayer);
registerProcessor("mic-sender", MicSender);
