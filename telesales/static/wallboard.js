// The supervisor wallboard: one WebSocket, a snapshot then events; nothing is polled.
// Durations tick locally from the server's clock (offset taken at each snapshot).
"use strict";

(() => {
  const root = document.getElementById("wallboard");
  const cap = Number(root.dataset.cap);
  const agents = new Map(), campaigns = new Map(), queues = new Map();
  let alerts = [];
  let offsetMs = 0; // server clock - browser clock
  let retryMs = 500;

  const STATUS_LABEL = {ready: "ready", paused: "paused", on_call: "on a call", wrap_up: "wrap-up",
                        logged_out: "logged out"};

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "dataset") Object.assign(node.dataset, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return node;
  }

  function since(iso) {
    if (!iso) return "";
    const s = Math.max(0, Math.floor((Date.now() + offsetMs - Date.parse(iso)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  }

  function pct(x) { return (100 * x).toFixed(1) + " %"; }

  function agentRow(a) {
    const status = a.status || "logged_out";
    const label = STATUS_LABEL[status] + (a.reason ? ` (${a.reason})` : "");
    const call = a.call_id
      ? el("a", {href: `/supervisor/calls/${a.call_id}`, className: "call-link", title: "listen to this call"},
           a.call_direction === "inbound" ? "inbound" : "outbound")
      : "";
    return el("tr", {dataset: {agentId: a.id, status}},
      el("td", {className: "agent"}, a.display_name || a.username),
      el("td", {}, el("span", {className: `st st-${status}`}, label)),
      el("td", {className: "n timer", dataset: {since: a.since || ""}}, since(a.since)),
      el("td", {className: "call"}, call),
      el("td", {className: "customer"}, a.call_id ? (a.customer || a.customer_number || "") : ""),
      el("td", {className: "campaign"}, a.call_id ? (a.campaign || "") : ""),
      el("td", {className: "n timer call-time", dataset: {since: a.call_answered || a.call_started || ""}},
         since(a.call_answered || a.call_started)),
      el("td", {className: "n dials"}, a.dials), el("td", {className: "n connects"}, a.connects),
      el("td", {className: "n sales"}, a.sales));
  }

  function totalRow(name, list, attrs) {
    const sum = k => list.reduce((n, a) => n + a[k], 0);
    const busy = list.filter(a => a.status === "on_call").length;
    const ready = list.filter(a => a.status === "ready").length;
    return el("tr", attrs,
      el("td", {colSpan: 7}, `${name}: ${list.length} agents, ${ready} ready, ${busy} on a call`),
      el("td", {className: "n dials"}, sum("dials")), el("td", {className: "n connects"}, sum("connects")),
      el("td", {className: "n sales"}, sum("sales")));
  }

  function renderAgents() {
    const teams = new Map();
    for (const a of agents.values()) {
      const key = a.team || "No team";
      if (!teams.has(key)) teams.set(key, []);
      teams.get(key).push(a);
    }
    const rows = [];
    for (const [team, list] of [...teams].sort((x, y) => x[0].localeCompare(y[0]))) {
      list.sort((x, y) => (x.display_name || x.username).localeCompare(y.display_name || y.username));
      rows.push(...list.map(agentRow));
      rows.push(totalRow(team, list, {className: "team-total", dataset: {team}}));
    }
    root.querySelector("#agents tbody").replaceChildren(...rows);
    const all = [...agents.values()];
    root.querySelector("#floor-total").replaceWith(totalRow("Floor", all, {id: "floor-total"}));
  }

  function renderQueues() {
    const rows = [...queues.values()].sort((x, y) => x.queue.localeCompare(y.queue)).map(q =>
      el("tr", {dataset: {queue: q.queue}}, el("td", {}, q.queue), el("td", {className: "n waiting"}, q.waiting),
         el("td", {className: "n timer", dataset: {since: q.longest_wait_since || ""}}, since(q.longest_wait_since))));
    root.querySelector("#queues tbody").replaceChildren(...rows);
    root.querySelector("#no-queues").hidden = rows.length > 0;
  }

  function renderCampaigns() {
    const rows = [...campaigns.values()].sort((x, y) => x.name.localeCompare(y.name)).map(c =>
      el("tr", {dataset: {campaignId: c.id}}, el("td", {}, c.name),
         el("td", {className: "n"}, c.answered_today), el("td", {className: "n"}, c.abandoned_today),
         el("td", {className: "n rate-today" + (c.rate_today > cap ? " over-cap" : "")}, pct(c.rate_today)),
         el("td", {className: "n rate-30d" + (c.rate_30d > cap ? " over-cap" : "")}, pct(c.rate_30d))));
    root.querySelector("#campaigns tbody").replaceChildren(...rows);
    root.querySelector("#no-campaigns").hidden = rows.length > 0;
  }

  function renderAlerts() {
    const items = alerts.slice().reverse().map(a => el("li", {dataset: {callId: a.call_id}},
      el("span", {className: "kind"}, a.kind || "alert"), " ",
      a.agent ? `${a.agent} · ` : "", a.speaker ? `${a.speaker}: ` : "",
      el("q", {}, a.text || ""), " ",
      el("a", {href: `/supervisor/calls/${a.call_id}`}, "open call")));
    root.querySelector("#alerts").replaceChildren(...items);
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "snapshot":
        offsetMs = Date.parse(ev.now) - Date.now();
        agents.clear(); campaigns.clear(); queues.clear();
        for (const a of ev.agents) agents.set(a.id, a);
        for (const c of ev.campaigns) campaigns.set(c.id, c);
        for (const q of ev.queues) queues.set(q.queue, q);
        alerts = ev.alerts;
        renderAgents(); renderQueues(); renderCampaigns(); renderAlerts();
        break;
      case "agent": agents.set(ev.agent.id, ev.agent); renderAgents(); break;
      case "agent_gone": agents.delete(ev.id); renderAgents(); break;
      case "campaign": campaigns.set(ev.campaign.id, ev.campaign); renderCampaigns(); break;
      case "queue": queues.set(ev.queue, ev); renderQueues(); break;
      case "alert": alerts.push(ev); alerts = alerts.slice(-50); renderAlerts(); break;
    }
  }

  function setConn(state, text) {
    const c = document.getElementById("conn");
    c.dataset.state = state;
    c.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${root.dataset.ws}`);
    ws.onopen = () => { retryMs = 500; setConn("live", "live"); };
    ws.onmessage = m => onEvent(JSON.parse(m.data));
    ws.onclose = () => {
      // Not polling: one reconnect after a loss (server restart, network), backing off to 10 s.
      setConn("lost", "connection lost; reconnecting…");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  setInterval(() => {
    for (const t of root.querySelectorAll(".timer")) t.textContent = since(t.dataset.since);
  }, 1000);
  connect();
})();
