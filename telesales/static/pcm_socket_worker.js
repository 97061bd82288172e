// The WebSocket of a PcmAudio.socket, in a worker: binary frames go straight between the socket and
// the audio worklets' MessagePorts, so a stalled main thread neither delays nor bunches up the audio.
// Main thread -> worker: {open: url}, {player: port}, {capture: port}, {sending: bool}, {frame: buf}, {close: true}
// Worker -> main thread: {open: true}, {text: string}, {frame: buf} (only without a player port), {close: {code, reason}}
"use strict";
let ws = null;
let player = null;
let sending = false;

function send(buf) {
  if (sending && ws && ws.readyState === WebSocket.OPEN) ws.send(buf);
}

onmessage = (e) => {
  const m = e.data;
  if (m.open) {
    ws = new WebSocket(m.open);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => postMessage({ open: true });
    ws.onclose = (ev) => postMessage({ close: { code: ev.code, reason: ev.reason } });
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") postMessage({ text: ev.data });
      else if (player) player.postMessage(ev.data, [ev.data]);
      else postMessage({ frame: ev.data }, [ev.data]);
    };
  }
  if (m.player) player = m.player;
  if (m.capture) m.capture.onmessage = (ev) => send(ev.data);
  if ("sending" in m) sending = !!m.sending;
  if (m.frame) send(m.frame);
  if (m.close && ws) ws.close();
};
