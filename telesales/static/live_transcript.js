// Live transcript of one call on the supervisor's call page: <div id="live-transcript" data-call-id="...">.
// Segments and alerts come over a WebSocket (the call's backlog first, then each new one); a lost
// connection is reopened with a growing delay and the backlog is merged by id, so nothing shows twice.
(() => {
  const root = document.getElementById("live-transcript");
  if (!root) return;
  const fromUrl = (location.pathname.match(/\/supervisor\/calls\/([0-9a-fA-F-]{36})/) || [])[1];
  const callId = root.dataset.callId || fromUrl;
  if (!callId) return;

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  const status = el("div", "live-status", "connecting…");
  const list = el("ol", "live-lines");
  root.replaceChildren(status, list);
  const seen = new Set();

  function place(line, key) {
    // Keep lines in call order (a short utterance can be transcribed before a longer earlier one).
    line.dataset.key = key;
    const after = [...list.children].find((c) => Number(c.dataset.key) > key);
    list.insertBefore(line, after || null);
    if (root.dataset.follow !== "false") line.scrollIntoView({ block: "nearest" });
  }

  function show(event) {
    const id = `${event.type}:${event.id}`;
    if (seen.has(id)) return;
    seen.add(id);
    if (event.type === "transcript") {
      const line = el("li", `live-line speaker-${event.speaker}`);
      line.dataset.speaker = event.speaker;
      line.append(el("span", "live-time", clock(event.start)), " ",
        el("span", "live-speaker", event.speaker === "agent" ? "Agent" : "Customer"), ": ",
        el("span", "live-text", event.text));
      place(line, event.start);
    } else if (event.type === "alert") {
      const what = event.kind === "phrase" ? `${event.speaker} said “${event.name}”` : event.name.replace("_", " ");
      const line = el("li", `live-alert alert-${event.kind}`);
      line.dataset.alert = event.name;
      line.append(el("strong", null, `⚠ ${what}`), " ", el("span", "live-text", event.text));
      list.append(line);
    } else if (event.type === "dropped") {
      status.textContent = `connection too slow: ${event.count} update(s) skipped`;
    }
  }

  let delay = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/live/calls/${encodeURIComponent(callId)}/transcript`);
    ws.onopen = () => { status.textContent = "live"; delay = 500; root.dataset.state = "open"; };
    ws.onmessage = (m) => { try { show(JSON.parse(m.data)); } catch (e) { console.error(e); } };
    ws.onclose = () => {
      root.dataset.state = "closed";
      status.textContent = "reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
