// Transcript search page: runs GET /api/v1/qa/search and lists the hits, each linking to the review page at its time.
(() => {
  const root = document.querySelector(".qa-search");
  const form = document.getElementById("search-form");
  const results = document.getElementById("results");
  const status = document.getElementById("search-status");
  const csrf = root.dataset.csrf;
  let page = 1;

  function params() {
    const p = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (!value) continue;
      // Dates from the pickers are whole days in the browser's time zone.
      if (name === "since" || name === "until") {
        const day = new Date(value + "T00:00:00");
        if (name === "until") day.setDate(day.getDate() + 1);
        p.set(name, day.toISOString());
      } else {
        p.set(name, value);
      }
    }
    return p;
  }

  function clock(seconds) {
    const s = Math.floor(seconds);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function row(item) {
    const li = document.createElement("li");
    li.className = "hit";
    const link = document.createElement("a");
    link.href = item.review_url;
    link.className = "hit-link";
    link.textContent = `${clock(item.start_s)} · ${item.speaker}`;
    const meta = document.createElement("span");
    meta.className = "hit-meta";
    const score = item.score === null ? "unscored" : `score ${item.score}`;
    meta.textContent = ` ${new Date(item.call_started_at).toLocaleString()} · ${item.agent || "no agent"} · ${score} · ${item.matched}`;
    const text = document.createElement("p");
    text.className = "snippet";
    text.innerHTML = item.snippet_html; // escaped by the server; only <mark> is markup
    li.append(link, meta, text);
    return li;
  }

  async function run(toPage) {
    page = toPage;
    const p = params();
    p.set("page", page);
    p.set("per_page", 20);
    status.textContent = "Searching…";
    const resp = await fetch("/api/v1/qa/search?" + p.toString());
    const body = await resp.json();
    results.replaceChildren();
    if (!resp.ok) {
      status.textContent = body.message || "Search failed";
      return;
    }
    status.textContent = body.total ? `${body.total}${body.total_is_lower_bound ? "+" : ""} found` : "Nothing found";
    results.append(...body.items.map(row));
    document.getElementById("prev").hidden = page <= 1;
    document.getElementById("next").hidden = page * body.per_page >= body.total;
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); run(1); });
  document.getElementById("prev").addEventListener("click", () => run(page - 1));
  document.getElementById("next").addEventListener("click", () => run(page + 1));

  async function loadSaved() {
    const list = document.getElementById("saved-list");
    const resp = await fetch("/api/v1/qa/saved-searches");
    if (!resp.ok) return;
    list.replaceChildren(...(await resp.json()).items.map((s) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "saved-search";
      b.textContent = s.name;
      b.addEventListener("click", () => {
        form.reset();
        for (const [k, v] of Object.entries(s.query)) if (form.elements[k]) form.elements[k].value = v;
        run(1);
      });
      return b;
    }));
  }

  if (root.dataset.canSave === "true") {
    document.getElementById("save-search").addEventListener("click", async () => {
      const query = Object.fromEntries(params());
      const name = document.getElementById("save-name").value;
      const resp = await fetch("/api/v1/qa/saved-searches", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ name, query }),
      });
      status.textContent = resp.ok ? `Saved "${name}"` : (await resp.json()).message;
      loadSaved();
    });
    loadSaved();
    loadQueue();
  }

  const REASONS = {
    failed_compliance: "failed a compliance check", sale_unconfirmed: "sale missing a confirmation",
    low_score: "low score", sample: "weekly sample",
  };

  async function loadQueue() {
    const list = document.getElementById("queue");
    const resp = await fetch("/api/v1/qa/queue?per_page=20");
    if (!resp.ok) return;
    const items = (await resp.json()).items;
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement("li");
      li.className = "hit";
      const link = document.createElement("a");
      link.href = item.review_url;
      link.textContent = `${REASONS[item.reason]} · ${item.agent || "no agent"} · score ${item.score ?? "–"}`;
      const claim = document.createElement("button");
      claim.type = "button";
      claim.className = "saved-search";
      claim.textContent = item.claimed_by ? "Yours" : "Claim";
      claim.disabled = Boolean(item.claimed_by);
      claim.addEventListener("click", async () => {
        const r = await fetch(`/api/v1/calls/${item.call_id}/claim`, { method: "POST", headers: { "X-CSRF-Token": csrf } });
        status.textContent = r.ok ? "Claimed" : (await r.json()).message;
        loadQueue();
      });
      li.append(link, " ", claim);
      return li;
    }));
    if (!items.length) list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "Nothing to review" }));
  }

  const initial = new URLSearchParams(location.search);
  if (initial.get("q")) {
    for (const [k, v] of initial) if (form.elements[k]) form.elements[k].value = v;
    run(1);
  }
})();
