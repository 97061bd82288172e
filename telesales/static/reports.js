// The reports page: reads /api/v1/reports/NAME as JSON, draws two uPlot charts, the table and the
// definitions, and points the CSV / XLSX links at the same query.
"use strict";

const CHARTS = {
  funnel: [
    ["Funnel (calls)", ["dials", "connects", "effective", "intents", "sales"]],
    ["Rates", ["connect_rate", "effective_rate", "intent_rate", "conversion_rate", "churn_rate"]],
  ],
  quality: [
    ["QA and survey scores", ["qa_score", "survey_score"]],
    ["Complaints and callbacks", ["complaints_opened", "complaints_overdue", "callbacks_kept", "callbacks_missed"]],
  ],
  cost: [
    ["Cost and revenue", ["total_cost", "revenue", "net_return"]],
    ["Cost per contact and per sale", ["cost_per_contact", "cost_per_sale"]],
  ],
};
const COLOURS = ["#2463eb", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a"];
const charts = [];
window.reportCharts = charts;

function query(form, format) {
  const f = new FormData(form);
  const q = new URLSearchParams({ from: f.get("from"), to: f.get("to"), by: f.get("by"), format });
  return `/api/v1/reports/${encodeURIComponent(f.get("report"))}?${q}`;
}

function num(v) {
  return v === null || v === undefined || v === "" ? null : Number(v);
}

function columnsOf(report) {
  const names = Object.keys(report.definitions).filter((n) => n !== "qa_categories");
  const cats = new Set();
  for (const r of [...report.rows, report.total]) for (const c of Object.keys(r.qa_categories || {})) cats.add(c);
  return { names, cats: [...cats].sort() };
}

function cell(value, name) {
  if (value === null || value === undefined) return "–";
  if (name.endsWith("_rate")) return (Number(value) * 100).toFixed(1) + "%";
  return String(value);
}

function drawTable(report) {
  const table = document.getElementById("report-table");
  const { names, cats } = columnsOf(report);
  const head = ["label", ...names, ...cats.map((c) => "qa_" + c)];
  table.tHead.innerHTML = "";
  const hr = table.tHead.insertRow();
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h === "label" ? report.by : h;
    th.title = report.definitions[h] || "";
    hr.appendChild(th);
  }
  const fill = (section, rows) => {
    section.innerHTML = "";
    for (const r of rows) {
      const tr = section.insertRow();
      for (const h of head) {
        const value = h.startsWith("qa_") && cats.includes(h.slice(3)) ? (r.qa_categories || {})[h.slice(3)] : r[h];
        tr.insertCell().textContent = cell(value, h);
      }
    }
  };
  fill(table.tBodies[0], report.rows);
  fill(table.tFoot, [report.total]);
}

function drawDefinitions(report) {
  const dl = document.getElementById("definitions");
  dl.innerHTML = "";
  for (const [name, text] of Object.entries(report.definitions)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = text;
    dl.append(dt, dd);
  }
}

function drawCharts(report) {
  while (charts.length) charts.pop().destroy();
  const labels = report.rows.map((r) => r.label);
  const xs = labels.map((_, i) => i);
  CHARTS[report.report].forEach(([title, fields], i) => {
    const box = document.getElementById(`chart-${i}`);
    document.getElementById(`chart-${i}-title`).textContent = title;
    box.innerHTML = "";
    const data = [xs, ...fields.map((f) => report.rows.map((r) => num(r[f])))];
    const opts = {
      width: Math.max(480, box.clientWidth || 560),
      height: 260,
      scales: { x: { time: false } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && labels[t] !== undefined ? labels[t] : "")) },
        {},
      ],
      series: [{ label: report.by, value: (u, v) => (v === null ? "" : labels[v]) },
        ...fields.map((f, j) => ({ label: f, stroke: COLOURS[j % COLOURS.length], width: 2,
                                   points: { show: true, size: 6 }, spanGaps: false }))],
    };
    const chart = new uPlot(opts, data, box);
    charts.push(chart);
    box.dataset.points = String(data.slice(1).flat().filter((v) => v !== null).length);
  });
}

// Changing a select and submitting fire overlapping requests; only the latest one may draw,
// or a slower earlier answer would repaint the page with stale filters.
let latest = 0;

async function show(form) {
  const mine = ++latest;
  const error = document.getElementById("report-error");
  error.hidden = true;
  document.getElementById("download-csv").href = query(form, "csv");
  document.getElementById("download-xlsx").href = query(form, "xlsx");
  const resp = await fetch(query(form, "json"), { headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (mine !== latest) return;
  if (!resp.ok) {
    error.textContent = body.message || `error ${resp.status}`;
    error.hidden = false;
    return;
  }
  drawTable(body);
  drawDefinitions(body);
  drawCharts(body);
  document.getElementById("charts").dataset.ready = `${body.report}:${body.by}:${body.from}:${body.to}`;
}

const form = document.getElementById("filters");
form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  show(form);
});
for (const el of form.querySelectorAll("select")) el.addEventListener("change", () => show(form));
show(form);
