// Call review page: playback synchronised with the transcript, talk bars, the scorecard and reviewer overrides.
(() => {
  const root = document.getElementById("review-root");
  const callId = root.dataset.callId;
  const canOverride = root.dataset.canOverride === "true";
  const player = document.getElementById("player");
  const lines = [];

  const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  const verdict = (p) => (p === true ? "pass" : p === false ? "fail" : "n/a");
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // Spans where both parties speak at once.
  function intersect(a, b) {
    const out = [];
    for (const x of a) for (const y of b) {
      const s = Math.max(x[0], y[0]), e = Math.min(x[1], y[1]);
      if (e > s) out.push([s, e]);
    }
    return out;
  }

  function bar(label, cls, spans, duration, kind) {
    const wrap = el("div");
    wrap.append(el("div", "timeline-label", label));
    const line = el("div", `timeline ${cls}`);
    for (const [s, e] of spans) {
      const part = el("span", kind);
      part.style.left = `${(100 * s) / duration}%`;
      part.style.width = `${Math.max(0.3, (100 * (e - s)) / duration)}%`;
      line.append(part);
    }
    wrap.append(line);
    return wrap;
  }

  function timelines(segments, duration) {
    const of = (who) => segments.filter((s) => s.speaker === who).map((s) => [s.start_s, s.end_s]);
    const agent = of("agent"), customer = of("customer"), unknown = of("unknown");
    const speech = [...agent, ...customer, ...unknown].sort((x, y) => x[0] - y[0]);
    const silence = [];
    let cursor = 0;
    for (const [s, e] of speech) { if (s > cursor) silence.push([cursor, s]); cursor = Math.max(cursor, e); }
    if (duration > cursor) silence.push([cursor, duration]);
    const box = document.getElementById("timelines");
    box.replaceChildren(
      bar("agent speech", "agent", agent.length ? agent : unknown, duration, "speech"),
      bar("customer speech", "customer", customer, duration, "speech"),
      bar("silence", "silence-line", silence, duration, "silence"),
      bar("overtalk", "overtalk-line", intersect(agent, customer), duration, "overtalk"),
    );
  }

  function transcript(segments) {
    const list = document.getElementById("transcript");
    list.replaceChildren(...segments.map((s) => {
      const li = el("li");
      li.dataset.start = s.start_s;
      li.dataset.end = s.end_s;
      li.append(el("span", "time", clock(s.start_s) + " "), el("span", "who", s.speaker), el("span", "text", s.text));
      li.addEventListener("click", () => { player.currentTime = s.start_s; player.play().catch(() => {}); });
      lines.push(li);
      return li;
    }));
  }

  function highlight() {
    const t = player.currentTime;
    let current = null;
    for (const li of lines) if (Number(li.dataset.start) <= t + 0.05) current = li;
    for (const li of lines) li.classList.toggle("current", li === current);
    if (current) current.scrollIntoView({ block: "nearest" });
  }
  player.addEventListener("timeupdate", highlight);
  player.addEventListener("seeked", highlight);

  function evidence(check) {
    return (check.evidence || []).map((e) => {
      if (e.text) return `${clock(e.start)} ${e.speaker}: “${e.text}”`;
      if (e.metric) return `${e.metric} = ${e.value}`;
      return e.missing || e.absent || e.reason || JSON.stringify(e);
    }).join("; ");
  }

  function overrideForm(check) {
    const form = el("form", "override-form");
    form.dataset.check = check.id;
    const choice = el("select");
    choice.name = "passed";
    for (const [value, text] of [["true", "pass"], ["false", "fail"], ["null", "n/a"]]) {
      const o = el("option", "", text); o.value = value; choice.append(o);
    }
    const comment = el("input");
    comment.name = "comment";
    comment.placeholder = "why";
    comment.required = true;
    const button = el("button", "", "Override");
    button.type = "submit";
    form.append(choice, comment, button);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const resp = await fetch(`/api/v1/calls/${callId}/overrides`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
        body: JSON.stringify({ check_id: check.id, passed: JSON.parse(choice.value), comment: comment.value }),
      });
      if (!resp.ok) { alert((await resp.json()).message); return; }
      load(false);
    });
    return form;
  }

  function scorecard(result, overrides) {
    const body = document.getElementById("checks");
    const score = document.getElementById("score");
    const note = document.getElementById("score-note");
    if (!result) { score.textContent = "not scored yet"; body.replaceChildren(); return; }
    const reviewed = result.reviewed_checks !== null;
    const checks = reviewed ? result.reviewed_checks : result.checks;
    score.textContent = (reviewed ? result.reviewed_score : result.score) ?? "unscorable";
    note.textContent = reviewed ? `(reviewed; automatic ${result.score ?? "unscorable"})` : "(automatic)";
    body.replaceChildren(...checks.map((c) => {
      const tr = el("tr");
      tr.dataset.check = c.id;
      const res = el("td", verdict(c.passed) === "n/a" ? "na" : verdict(c.passed), verdict(c.passed));
      if (c.override) res.append(el("div", "na", `reviewer: “${c.override.comment}”`));
      const ev = el("td", "", evidence(c));
      if (canOverride) ev.append(overrideForm(c));
      tr.append(el("td", "", c.id), res, ev);
      return tr;
    }));
    document.getElementById("overrides").replaceChildren(...overrides.map((o) => el("li", "",
      `${new Date(o.created_at).toLocaleString()} ${o.reviewer}: ${o.check_id} ${verdict(o.automatic_passed)} → ` +
      `${verdict(o.passed)} (score ${o.score_before ?? "–"} → ${o.score_after ?? "–"}): ${o.comment}`)));
  }

  async function load(first) {
    const resp = await fetch(`/api/v1/calls/${callId}/review`);
    const data = await resp.json();
    if (!resp.ok) { document.getElementById("call-summary").textContent = data.message; return; }
    const c = data.call;
    document.getElementById("call-summary").textContent =
      `${new Date(c.created_at).toLocaleString()} · agent ${c.agent || "–"}${c.team ? " (" + c.team + ")" : ""} · ` +
      `${c.direction} · disposition ${c.final_disposition || "–"}`;
    scorecard(data.result, data.overrides);
    if (!first) return;
    const duration = Number(data.result?.duration_seconds) || Math.max(1, ...data.segments.map((s) => s.end_s));
    timelines(data.segments, duration);
    transcript(data.segments);
    if (!data.has_recording) player.replaceWith(el("p", "na", "No recording on file for this call."));
  }

  // ?t= from a search result: start playback at that moment.
  const start = Number(new URLSearchParams(location.search).get("t"));
  if (start > 0) {
    const seek = () => { player.currentTime = start; player.play().catch(() => {}); };
    if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
  }
  load(true);
})();
