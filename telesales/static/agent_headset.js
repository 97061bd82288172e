// The agent desk's browser headset: the microphone goes to my answered seat call and the customer
// comes back to the speaker, over /api/v1/agent/headset (see telesales/browser_headset.py), using
// PcmAudio (pcm_audio.js). The other choice, "my phone", leaves audio to the agent's SIP phone.
// The choice is kept in this browser (localStorage); the service's dialer.headset is the first default.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const box = $("headset");
  const KEY = "telesales.headset";
  const FLOW_MS = 1500; // no frame for this long: that direction shows as not flowing
  const h = { ctx: null, mic: null, capture: null, player: null, ws: null, onCall: false,
    lastUp: 0, lastDown: 0, micFrames: -1 };
  window.agentHeadset = h; // for the page tests: what the page plays is h.player.node's output

  function setState(state, text) {
    box.dataset.state = state;
    $("headset-state").textContent = text;
  }

  function flows() {
    const now = performance.now();
    const up = h.onCall && now - h.lastUp < FLOW_MS;
    const down = h.onCall && now - h.lastDown < FLOW_MS;
    $("flow-up").dataset.flowing = String(up);
    $("flow-up").textContent = `mic → call: ${up ? "yes" : "no"}`;
    $("flow-down").dataset.flowing = String(down);
    $("flow-down").textContent = `call → speaker: ${down ? "yes" : "no"}`;
  }

  function onMessage(msg) {
    if (msg.type === "call") {
      h.onCall = true;
      h.ws.sending(true);
      setState("call", "on a call: audio through this page");
    } else if (msg.type === "idle") {
      h.onCall = false;
      h.ws.sending(false);
      setState("connected", "connected, waiting for a call");
    } else if (msg.type === "stats") {
      // The service counts what it injected into the call: that, not what we sent, says "mic → call".
      if (msg.mic_frames > h.micFrames && h.micFrames >= 0) h.lastUp = performance.now();
      h.micFrames = msg.mic_frames;
      h.stats = msg;
    } else if (msg.type === "error" || msg.type === "taken_over") {
      setState("error", msg.message);
    }
    flows();
  }

  async function start() {
    if (h.ws || h.starting) return;
    h.starting = true;
    setState("starting", "starting…");
    try {
      h.ctx = await PcmAudio.context();
      h.mic = await PcmAudio.microphone(h.ctx);
    } catch (e) {
      setState("error", `no microphone: ${e.message}`);
      stop();
      return;
    } finally {
      h.starting = false;
    }
    // 60 ms absorbs ordinary network jitter; a burst after a stall may queue up to 300 ms, trimmed back slowly.
    let received = 0;
    h.player = PcmAudio.player(h.ctx, { targetMs: 60, maxMs: 300, onStats: (st) => {
      if (st.received > received) h.lastDown = performance.now();
      received = st.received;
    } });
    h.capture = PcmAudio.capture(h.ctx, h.mic.node, (_frame, level) => {
      $("mic-level").value = Math.min(1, level * 4); // speech sits around 0.05-0.2 RMS
    });
    h.ws = PcmAudio.socket("/api/v1/agent/headset", {
      player: h.player,
      capture: h.capture,
      onOpen: () => setState("connected", "connected, waiting for a call"),
      onMessage,
      onClose: (e) => {
        if (box.dataset.state !== "error") setState("error", `headset disconnected${e.reason ? ": " + e.reason : ""}`);
        h.ws = null;
        stop();
      },
    });
  }

  function stop() {
    if (h.ws) { const ws = h.ws; h.ws = null; ws.close(); }
    for (const part of [h.capture, h.player, h.mic]) if (part) part.stop();
    if (h.ctx) h.ctx.close();
    Object.assign(h, { ctx: null, mic: null, capture: null, player: null, onCall: false, micFrames: -1 });
    $("mic-level").value = 0;
    flows();
  }

  function chooseMode(mode) {
    localStorage.setItem(KEY, mode);
    $("headset-start").hidden = mode !== "browser";
    if (mode !== "browser") { stop(); setState("off", "audio through your phone"); }
    else if (!h.ws) setState("off", "off: press Start headset");
  }

  $("headset-mode").value = localStorage.getItem(KEY) || box.dataset.default || "browser";
  $("headset-mode").onchange = () => chooseMode($("headset-mode").value);
  $("headset-start").onclick = () => start();
  // Going ready or dialling is a click, which browsers need before they start audio: start the headset with it.
  for (const id of ["ready", "dial"]) {
    $(id).addEventListener("click", () => { if ($("headset-mode").value === "browser") start(); });
  }
  chooseMode($("headset-mode").value);
  setInterval(flows, 500);
})();
