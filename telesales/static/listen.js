// The supervisor listen page: live call audio over a WebSocket into an AudioWorklet, and the
// supervisor's microphone back for whisper (agent only) and barge (both parties, recorded).
// Protocol: telesales/routes/monitoring.py.
(() => {
  const root = document.getElementById("listen-root");
  const callId = root.dataset.callId;
  const statusEl = document.getElementById("listen-status");
  let ctx = null, player = null, ws = null, mic = null, mode = null;

  const status = (text) => { statusEl.textContent = text; };

  async function audio() {
    if (!ctx) {
      // 16 kHz: the seat's rate; the browser resamples to the sound card and from the microphone.
      ctx = new AudioContext({sampleRate: 16000, latencyHint: "interactive"});
      await ctx.audioWorklet.addModule("/static/listen_worklet.js");
      player = new AudioWorkletNode(ctx, "listen-player", {numberOfInputs: 0, outputChannelCount: [1]});
      player.connect(ctx.destination);
    }
    await ctx.resume();
  }

  function connect() {
    return new Promise((resolve, reject) => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}/api/v1/supervisor/calls/${callId}/audio`);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => resolve(socket);
      socket.onerror = () => reject(new Error("the audio connection was refused"));
      socket.onmessage = (e) => {
        if (typeof e.data !== "string") {
          player.port.postMessage(e.data, [e.data]);
          return;
        }
        const msg = JSON.parse(e.data);
        if (msg.type === "mode") { mode = msg.mode; status(msg.mode === "listen" ? "listening"
          : msg.mode === "whisper" ? "whispering to the agent" : "barged in: both parties hear you"); }
        else if (msg.type === "ended") status("the call has ended");
        else if (msg.type === "error") status(msg.message);
      };
      socket.onclose = () => { if (ws === socket) { ws = null; stopMic(); mode = null; } };
    });
  }

  async function startMic() {
    if (mic) return;
    const stream = await navigator.mediaDevices.getUserMedia(
      {audio: {echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1}});
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-sender", {numberOfOutputs: 1});
    node.port.onmessage = (e) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    // A worklet is only run when something pulls it: a silent gain to the speakers does.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(ctx.destination);
    mic = {stream, source, node, mute};
  }

  function stopMic() {
    if (!mic) return;
    mic.stream.getTracks().forEach((t) => t.stop());
    mic.source.disconnect(); mic.node.disconnect(); mic.mute.disconnect();
    mic = null;
  }

  async function setMode(next) {
    try {
      await audio();
      if (!ws) { status("connecting…"); ws = await connect(); }
      if (next === "listen") stopMic(); else await startMic();
      ws.send(JSON.stringify({mode: next}));
    } catch (err) {
      status(err.message || String(err));
    }
  }

  function stop() {
    stopMic();
    if (ws) { const s = ws; ws = null; s.close(); }
    mode = null;
    status("not listening");
  }

  document.querySelectorAll("#listen-root button[data-mode]").forEach((b) =>
    b.addEventListener("click", () => setMode(b.dataset.mode)));
  document.getElementById("listen-stop").addEventListener("click", stop);

  // What the page has played, per direction, as 16 kHz s16le bytes (for tests and diagnostics).
  window.listenCapture = () => new Promise((resolve) => {
    if (!player) { resolve(null); return; }
    const previous = player.port.onmessage;
    player.port.onmessage = (e) => {
      if (!e.data || e.data.type !== "capture") return;
      player.port.onmessage = previous;
      resolve(e.data);
    };
    player.port.postMessage({type: "capture"});
  });
  window.listenMode = () => mode;
})();
