// The inbound screen pop on the agent desk: polls /api/v1/agent/screen-pop and shows who is calling
// (matched by the caller's number), which queue and how long they waited, and their last calls.
// Everything from the server is written with textContent, never as HTML.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let current = null;

  function render(data) {
    const box = $("screen-pop");
    current = data.call;
    if (!data.call) { box.hidden = true; return; }
    // An inbound call has no lead, so the lead card's hang-up button is not shown: this one is.
    $("pop-hangup").hidden = !!data.call.ended_at;
    const c = data.customer && data.customer.customer;
    $("pop-queue").textContent = data.call.queue ? `· ${data.call.queue}` : "";
    $("pop-name").textContent = c ? (c.name || "(no name)") : "Unknown caller";
    $("pop-company").textContent = c && c.company ? c.company : "";
    $("pop-number").textContent = data.call.from_number || "number withheld";
    $("pop-waited").textContent = data.call.waited_seconds == null ? ""
      : `· waited ${Math.round(data.call.waited_seconds)} s`;
    const list = $("pop-history");
    list.replaceChildren();
    for (const call of ((data.customer && data.customer.calls) || []).slice(0, 5)) {
      const li = document.createElement("li");
      li.textContent = `${(call.created_at || "").slice(0, 16)} ${call.direction} ${call.disposition || ""}`;
      list.append(li);
    }
    box.hidden = false;
  }

  async function poll() {
    try {
      const resp = await fetch("/api/v1/agent/screen-pop");
      if (resp.ok) render(await resp.json());
    } catch (e) { /* the next poll tries again */ }
  }

  $("pop-hangup").onclick = async () => {
    if (!current) return;
    await fetch("/api/v1/agent/hangup", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": $("desk").dataset.csrf },
      body: JSON.stringify({ call_id: current.id }),
    });
    poll();
  };

  poll();
  setInterval(poll, 1000);
})();
