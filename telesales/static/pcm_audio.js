// PcmAudio: live call audio between Web Audio and a WebSocket, in the system's one frame format
// (16 kHz mono signed 16-bit little-endian, 20 ms = 320 samples = 640 bytes per binary message).
// Page-independent, so the agent's browser headset and the supervisor's listen/whisper share it:
//
//   const ctx = await PcmAudio.context();                        // AudioContext with the worklets loaded
//   const mic = await PcmAudio.microphone(ctx);                  // getUserMedia -> source node
//   const cap = PcmAudio.capture(ctx, mic.node, (frame, level) => ...);   // frame null once sent to a socket
//   const player = PcmAudio.player(ctx, { targetMs: 60, maxMs: 200, onStats: (s) => ... });
//   const sock = PcmAudio.socket("/api/...", { player, capture: cap, onMessage: (obj) => ..., onOpen, onClose });
//   sock.sending(true);   // microphone frames go out only while this is on
//   ... cap.stop(); player.stop(); mic.stop(); sock.close(); ctx.close();
//
// The socket lives in a worker (pcm_socket_worker.js): frames go between it and the worklets without
// the main thread. Text messages are JSON objects; binary messages are frames.
(() => {
  "use strict";
  const WORKLET = "/static/pcm_worklet.js";
  const SOCKET_WORKER = "/static/pcm_socket_worker.js";

  async function context() {
    // The context runs at the device's rate; the worklets resample to and from 16 kHz, because some
    // browsers refuse to connect a microphone to a context at another rate.
    const ctx = new AudioContext({ latencyHint: "interactive" });
    await ctx.audioWorklet.addModule(WORKLET);
    if (ctx.state !== "running") await ctx.resume();
    return ctx;
  }

  async function microphone(ctx, constraints) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: constraints || { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const node = ctx.createMediaStreamSource(stream);
    return { node, stream, stop: () => { node.disconnect(); stream.getTracks().forEach((t) => t.stop()); } };
  }

  // Frames of whatever `source` (any AudioNode) outputs; onFrame(Int16Array(320), rmsLevel 0..1).
  function capture(ctx, source, onFrame) {
    const node = new AudioWorkletNode(ctx, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1,
      channelCount: 1, channelCountMode: "explicit" });
    node.port.onmessage = (e) => onFrame(e.data.frame || null, e.data.level);
    source.connect(node);
    // Its output is silence; connected so the browser keeps pulling the node.
    node.connect(ctx.destination);
    return { node, stop: () => { node.port.postMessage("stop"); source.disconnect(node); node.disconnect(); } };
  }

  // Plays pushed frames (ArrayBuffer or Int16Array of 320 samples) through a small jitter buffer.
  function player(ctx, { targetMs = 60, maxMs = 200, onStats = null, destination = null } = {}) {
    const node = new AudioWorkletNode(ctx, "pcm-player", { numberOfInputs: 0, numberOfOutputs: 1,
      outputChannelCount: [1], processorOptions: { targetMs, maxMs } });
    node.connect(destination || ctx.destination);
    let stats = { received: 0, played: 0, underruns: 0, dropped: 0, trimmed: 0, bufferedMs: 0 };
    node.port.onmessage = (e) => { stats = e.data.stats; if (onStats) onStats(stats); };
    return {
      node,
      push(frame) {
        const buf = frame instanceof ArrayBuffer ? frame : frame.buffer.slice(frame.byteOffset,
          frame.byteOffset + frame.byteLength);
        node.port.postMessage(buf, [buf]);
      },
      stats: () => stats,
      stop: () => { node.port.postMessage("stop"); node.disconnect(); },
    };
  }

  // A WebSocket carrying frames both ways: the customer's frames into `player`, `capture`'s frames out.
  function socket(path, { player = null, capture = null, onMessage = null, onOpen = null, onClose = null,
    onFrame = null } = {}) {
    const url = new URL(path, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const worker = new Worker(SOCKET_WORKER);
    let closing = false; // closed by us: onClose is for the other end going away
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.open && onOpen) onOpen();
      if (m.text !== undefined && onMessage) onMessage(JSON.parse(m.text));
      if (m.frame && onFrame) onFrame(m.frame);
      if (m.close) { worker.terminate(); if (onClose && !closing) onClose(m.close); }
    };
    if (player) {
      const ch = new MessageChannel();
      player.node.port.postMessage({ source: ch.port1 }, [ch.port1]);
      worker.postMessage({ player: ch.port2 }, [ch.port2]);
    }
    if (capture) {
      const ch = new MessageChannel();
      capture.node.port.postMessage({ sink: ch.port1 }, [ch.port1]);
      worker.postMessage({ capture: ch.port2 }, [ch.port2]);
    }
    worker.postMessage({ open: url.href });
    return {
      sending: (on) => worker.postMessage({ sending: on }),
      send: (frame) => worker.postMessage({ frame }, [frame]),
      close: () => { closing = true; worker.postMessage({ close: true }); setTimeout(() => worker.terminate(), 1000); },
    };
  }

  window.PcmAudio = { SAMPLE_RATE: 16000, FRAME_SAMPLES: 320, FRAME_BYTES: 640, context, microphone, capture,
    player, socket };
})();
