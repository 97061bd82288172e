// The agent desk: polls /api/v1/agent/desk and renders it; buttons call the desk API.
// Everything from the server is written with textContent, never as HTML.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const csrf = $("desk").dataset.csrf;
  let desk = null;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function show(message, ok) {
    const m = $("message");
    m.textContent = message;
    m.classList.toggle("ok", !!ok);
    m.hidden = !message;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error(data.message || `request failed (${resp.status})`);
      err.data = data;
      throw err;
    }
    return data;
  }

  async function act(fn, okMessage) {
    try {
      await fn();
      show(okMessage || "", true);
    } catch (e) {
      show(e.message);
    }
    await refresh();
  }

  function clock(seconds) {
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    return (h ? h + ":" : "") + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function renderStatus(d) {
    const st = d.status;
    $("status").textContent = st ? st.status.replace("_", " ") : "not at the desk";
    $("status").dataset.status = st ? st.status : "";
    $("status-reason").textContent = st && st.reason ? `(${st.reason})` : "";
    $("status-time").dataset.since = st ? st.since : "";
    tick();
    const select = $("campaign");
    const chosen = select.value || (st && st.campaign_id ? String(st.campaign_id) : "");
    if (select.options.length !== d.campaigns.length) {
      select.replaceChildren(...d.campaigns.map((c) => {
        const o = el("option", c.name);
        o.value = c.id;
        return o;
      }));
    }
    if (chosen) select.value = chosen;
    const busy = st && (st.status === "on_call" || st.status === "wrap_up");
    $("ready").disabled = busy;
    $("pause").disabled = st && st.status === "on_call";
    $("next-lead").disabled = !st || st.status !== "ready" || !!d.lead;
  }

  function tick() {
    const since = $("status-time").dataset.since;
    $("status-time").textContent = since ? clock(Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000))) : "";
  }

  function renderCallbacks(d) {
    $("callbacks").replaceChildren(...(d.callbacks.length ? d.callbacks.map((cb) => {
      const li = el("li", null, cb.due ? "due" : "");
      li.append(el("span", `${when(cb.due_at)} · ${cb.customer_name}`));
      if (cb.lead_id) {
        const b = el("button", "Take", "secondary");
        b.type = "button";
        b.onclick = () => act(() => api("POST", "/api/v1/agent/take", { lead_id: cb.lead_id }));
        li.append(b);
      }
      return li;
    }) : [el("li", "none due")]));
  }

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.append(el("th", h)));
    t.append(head);
    rows.forEach((r) => {
      const tr = el("tr");
      r.forEach((v) => tr.append(el("td", v)));
      t.append(tr);
    });
    return t;
  }

  function renderHistory(lead, target) {
    const parts = [];
    const section = (title, node) => { parts.push(el("h4", title), node); };
    section("Calls", table(["When", "Agent", "Disposition", "QA"], lead.calls.map((c) =>
      [when(c.created_at), c.agent || "", c.disposition_label || c.disposition || "—", c.qa_score ?? "—"])));
    if (lead.orders.length) section("Orders", table(["When", "Product", "Total", "Status"], lead.orders.map((o) =>
      [when(o.created_at), o.product, `${o.total} ${o.currency}`, o.status])));
    if (lead.open_complaints.length) section("Open complaints", table(["Received", "Content", "State"],
      lead.open_complaints.map((c) => [when(c.received_at), c.content, c.state])));
    if (lead.follow_ups.length) section("Follow-ups", table(["Due", "Owner", "Status", "Note"],
      lead.follow_ups.map((f) => [when(f.due_at), f.owner || "anyone", f.status, f.note])));
    section("Notes and contacts", table(["When", "Kind", "Summary"], lead.interactions.slice().reverse().map((i) =>
      [when(i.occurred_at), i.kind, i.summary])));
    (target || $("history")).replaceChildren(...parts);
  }

  function renderLead(d) {
    const lead = d.lead;
    $("lead").hidden = !lead;
    $("no-lead").hidden = !!lead;
    if (!lead) return;
    $("saved").hidden = true;
    const c = lead.customer;
    $("c-name").textContent = c.name || "(no name)";
    $("c-company").textContent = c.company || "";
    $("c-phone").textContent = lead.phone;
    $("c-phones").textContent = c.phones.map((p) => p.e164).filter((p) => p !== lead.phone).join(", ") || "—";
    $("c-source").textContent = c.source_channel || "—";
    $("c-tags").textContent = c.tags.join(", ") || "—";
    const flags = [el("span", c.consent ? "consent given" : "no consent", "flag"),
      el("span", c.do_not_call ? "DO NOT CALL" : "callable", c.do_not_call ? "flag bad" : "flag")];
    $("c-flags").replaceChildren(...flags);
    $("c-lead").textContent = `${lead.campaign.name} · ${lead.status} · ${lead.attempts_total} attempts`;
    $("gates").textContent = lead.gates.allowed ? "" :
      "Blocked now: " + lead.gates.reasons.map((r) => r.message).join("; ");
    $("script").textContent = lead.script || "(this campaign has no script)";
    renderHistory(lead);
    const call = d.call && !d.call.ended_at ? d.call : null;
    $("dial").disabled = !!d.call;
    $("hangup").hidden = !call;
    $("call-controls").hidden = !(call && call.seat);
    $("call-line").textContent = d.call ? (call ? `On a call to ${d.call.to_number || lead.phone}` :
      "Call ended: record the disposition") : "";
  }

  async function refresh() {
    try {
      desk = await api("GET", "/api/v1/agent/desk");
    } catch (e) {
      show(e.message);
      return;
    }
    renderStatus(desk);
    renderCallbacks(desk);
    renderLead(desk);
  }

  // The released lead leaves the desk: its customer's history stays in view, as saved.
  async function showSaved(customer) {
    const file = await api("GET", `/api/v1/customers/${customer.id}`);
    $("saved-name").textContent = customer.name || "(no name)";
    renderHistory(file, $("saved-history"));
    $("saved").hidden = false;
  }

  function partsFor(code) {
    const opt = [...$("code").options].find((o) => o.value === code);
    return opt && opt.dataset.requires ? opt.dataset.requires.split(" ").filter(Boolean) : [];
  }

  function showParts() {
    const needed = partsFor($("code").value);
    document.querySelectorAll("fieldset[data-part]").forEach((f) => { f.hidden = !needed.includes(f.dataset.part); });
  }

  function wrapUpBody() {
    const form = $("wrap-up");
    const code = $("code").value;
    const body = { code };
    if (desk && desk.call) body.call_id = desk.call.id;
    else if (desk && desk.lead) body.lead_id = desk.lead.lead_id;
    const note = form.elements.note.value.trim();
    if (note) body.note = note;
    for (const part of partsFor(code)) {
      const values = {};
      for (const input of form.querySelectorAll(`[name^="${part}."]`)) {
        if (input.value === "") continue;
        const key = input.name.slice(part.length + 1);
        values[key] = key === "due_at" ? new Date(input.value).toISOString() : input.value;
      }
      body[part] = values;
    }
    return body;
  }

  $("code").addEventListener("change", showParts);
  $("ready").onclick = () => act(() => api("POST", "/api/v1/agent/status",
    { status: "ready", campaign_id: Number($("campaign").value) || undefined }));
  $("pause").onclick = () => act(() => api("POST", "/api/v1/agent/status",
    { status: "paused", reason: $("pause-reason").value, campaign_id: Number($("campaign").value) || undefined }));
  $("next-lead").onclick = () => act(async () => {
    const r = await api("POST", "/api/v1/agent/next-lead", { campaign_id: Number($("campaign").value) });
    if (!r.lead) throw new Error(r.message);
  });
  $("dial").onclick = () => act(() => api("POST", "/api/v1/agent/dial", { lead_id: desk.lead.lead_id }));
  $("hangup").onclick = () => act(() => api("POST", "/api/v1/agent/hangup", { call_id: desk.call.id }));
  const control = (body) => act(() => api("POST", "/api/v1/agent/call", { call_id: desk.call.id, ...body }));
  $("hold").onclick = () => control({ action: "hold" });
  $("unhold").onclick = () => control({ action: "unhold" });
  $("transfer").onclick = () => control({ action: "transfer", number: $("transfer-number").value });
  document.querySelectorAll(".dtmf .key").forEach((k) => {
    k.onclick = () => control({ action: "dtmf", digits: k.dataset.digit });
  });
  $("line-test").onclick = async () => {
    show("Testing your line…", true);
    try {
      const r = await api("POST", "/api/v1/agent/line-test");
      const answer = r.seconds_to_answer === null ? "" : `, answered in ${r.seconds_to_answer} s`;
      show(`Line test: ${r.status} (SIP ${r.sip_code}${answer})`, r.status === "answered");
    } catch (e) {
      show(e.message);
    }
  };
  $("skip").onclick = () => act(async () => {
    await api("POST", "/api/v1/agent/skip", { lead_id: desk.lead.lead_id, reason: $("skip-reason").value });
    $("skip-reason").value = "";
  });
  $("wrap-up").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const customer = desk && desk.lead ? desk.lead.customer : null;
    act(async () => {
      const r = await api("POST", "/api/v1/agent/wrap-up", wrapUpBody());
      $("wrap-up").reset();
      showParts();
      if (customer) await showSaved(customer);
      return r;
    }, "Disposition saved");
  });

  showParts();
  refresh();
  setInterval(tick, 1000);
  setInterval(refresh, 3000);
})();
