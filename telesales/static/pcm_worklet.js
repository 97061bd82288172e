// AudioWorklet processors for the system's one frame format: 16 kHz mono s16, 20 ms (320 samples).
// Loaded by pcm_audio.js; they run on the audio thread, so they only resample, buffer and post.
//
//   "pcm-capture": input at the context's rate -> 320-sample Int16Array frames posted to the port,
//                  each with its RMS level (0..1); given a MessagePort ({sink: port}), the frames go
//                  there instead (a socket worker) and the node's port gets only the levels.
//   "pcm-player":  Int16Array frames (ArrayBuffers) posted to the port, or to a MessagePort handed
//                  over as {source: port} -> output at the context's rate, through a jitter buffer
//                  that waits for `targetMs` before playing, goes back to waiting on an underrun, and
//                  drops the oldest audio beyond `maxMs` (latency never grows without end).
// The extra ports let frames go between the audio thread and a worker's WebSocket without passing
// the page's main thread, which layout, scripts or a busy machine can stall for hundreds of ms.
"use strict";

const RATE = 16000;
const FRAME = 320;

// Streaming resampler. Down: each output sample is the mean of the input samples it covers (a box
// filter, enough anti-aliasing for speech at 48 or 44.1 kHz -> 16 kHz). Up: linear interpolation.
class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;
    this.acc = 0; this.n = 0; this.pos = 0; // down
    this.prev = 0; this.t = 0; // up
  }

  push(input, out) {
    if (this.step >= 1) {
      for (let i = 0; i < input.length; i++) {
        this.acc += input[i]; this.n++; this.pos += 1;
        if (this.pos >= this.step) { out.push(this.acc / this.n); this.pos -= this.step; this.acc = 0; this.n = 0; }
      }
    } else {
      for (let i = 0; i < input.length; i++) {
        const x = input[i];
        while (this.t < 1) { out.push(this.prev + (x - this.prev) * this.t); this.t += this.step; }
        this.t -= 1;
        this.prev = x;
      }
    }
  }
}

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, RATE);
    this.pending = [];
    this.running = true;
    this.sink = null;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
      else if (e.data && e.data.sink) this.sink = e.data.sink;
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.resampler.push(channel, this.pending);
    while (this.pending.length >= FRAME) {
      const samples = this.pending.splice(0, FRAME);
      const frame = new Int16Array(FRAME);
      let sum = 0;
      for (let i = 0; i < FRAME; i++) {
        const s = Math.max(-1, Math.min(1, samples[i]));
        sum += s * s;
        frame[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
      }
      const level = Math.sqrt(sum / FRAME);
      if (this.sink) {
        this.sink.postMessage(frame.buffer, [frame.buffer]);
        this.port.postMessage({ level });
      } else {
        this.port.postMessage({ frame, level }, [frame.buffer]);
      }
    }
    return this.running;
  }
}

class PcmPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.target = Math.round(((o.targetMs || 60) * RATE) / 1000);
    this.max = Math.max(this.target + FRAME, Math.round(((o.maxMs || 200) * RATE) / 1000));
    this.queue = []; // Float32Array frames at 16 kHz
    this.queued = 0;
    this.waiting = true;
    this.high = 0; // output samples played while the buffer held more than twice the target
    this.resampler = new Resampler(RATE, sampleRate);
    this.out = [];
    this.stats = { received: 0, played: 0, underruns: 0, dropped: 0, trimmed: 0 };
    this.lastReport = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") { this.running = false; return; }
      if (e.data && e.data.source) { e.data.source.onmessage = (m) => this.take(new Int16Array(m.data)); return; }
      this.take(new Int16Array(e.data));
    };
  }

  take(pcm) {
    const f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 0x8000;
    this.queue.push(f);
    this.queued += f.length;
    this.stats.received++;
    while (this.queued > this.max) { // the sender ran ahead (a burst after a stall): drop the oldest
      this.queued -= this.queue.shift().length;
      this.stats.dropped++;
    }
  }

  next16k() {
    if (this.waiting && this.queued >= this.target) this.waiting = false;
    if (!this.waiting && this.queue.length) {
      const f = this.queue.shift();
      this.queued -= f.length;
      this.stats.played++;
      return f;
    }
    if (!this.waiting) { this.waiting = true; this.stats.underruns++; }
    return new Float32Array(FRAME);
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    while (this.out.length < n) this.resampler.push(this.next16k(), this.out);
    // Latency creep (the sender's clock a little fast, or a burst after a stall that stayed under maxMs):
    // after a whole second above twice the target, one frame goes.
    this.high = this.queued > 2 * this.target ? this.high + n : 0;
    if (this.high >= sampleRate && this.queue.length) {
      this.queued -= this.queue.shift().length;
      this.stats.trimmed++;
      this.high = 0;
    }
    const block = this.out.splice(0, n);
    for (const channel of out) channel.set(block);
    if (currentTime - this.lastReport >= 0.25) {
      this.lastReport = currentTime;
      this.port.postMessage({ stats: { ...this.stats, bufferedMs: (this.queued * 1000) / RATE } });
    }
    return this.running;
  }
}

registerProcessor("pcm-capture", PcmCapture);
registerProcessor("pcm-player", PcmPlayer);
