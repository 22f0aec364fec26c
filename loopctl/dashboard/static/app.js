// loopctl dashboard: fetches JSON views, draws them as SVG, refreshes on server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
const state = { view: "progress", cfg: null, page: 1, size: 25, sort: "number", desc: false, trial: "" };
const COLORS = { sobol: "#8e24aa", imported: "#6d4c41", suggested: "#00897b", front: "#e53935" };

function esc(s) { return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(5).replace(/\.?0+(e|$)/, "$1");
  return String(v);
}
// replaced only when it changed: buttons stay the same elements, typed reasons stay typed
function setHTML(e, html) { if (e.dataset.html !== html) { e.innerHTML = html; e.dataset.html = html; } }
// whether a view's data differ from what it shows (redrawing the same would only flicker)
function changed(e, data) { const k = JSON.stringify(data); if (e.dataset.key === k) return false; e.dataset.key = k; return true; }
function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "–"; }
async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

// ------------------------------------------------------------------ SVG charts
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function ticks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || mag * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
function range(vals) {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) if (v !== null && isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const pad = (hi - lo) * 0.04;
  return [lo - pad, hi + pad];
}
// plot({w, h, x: [lo, hi], y: [lo, hi], xlabel, ylabel, title}) -> {svg, X, Y, g}
function plot(o) {
  const w = o.w || 460, h = o.h || 260, m = { l: 58, r: 10, t: o.title || o.legend ? 20 : 8, b: 36 };
  const svg = el("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  const X = (v) => m.l + ((v - o.x[0]) / (o.x[1] - o.x[0])) * (w - m.l - m.r);
  const Y = (v) => h - m.b - ((v - o.y[0]) / (o.y[1] - o.y[0])) * (h - m.t - m.b);
  if (!o.noX) for (const t of ticks(o.x[0], o.x[1], 6)) {
    el("line", { x1: X(t), x2: X(t), y1: m.t, y2: h - m.b, class: "gridline" }, svg);
    el("text", { x: X(t), y: h - m.b + 14, "text-anchor": "middle" }, svg).textContent = fmt(t);
  }
  if (!o.noY) for (const t of ticks(o.y[0], o.y[1], 5)) {
    el("line", { x1: m.l, x2: w - m.r, y1: Y(t), y2: Y(t), class: "gridline" }, svg);
    el("text", { x: m.l - 4, y: Y(t) + 4, "text-anchor": "end" }, svg).textContent = fmt(t);
  }
  el("rect", { x: m.l, y: m.t, width: w - m.l - m.r, height: h - m.t - m.b, fill: "none", class: "axis" }, svg);
  el("text", { x: (m.l + w - m.r) / 2, y: h - 4, "text-anchor": "middle" }, svg).textContent = o.xlabel || "";
  el("text", { x: 12, y: (m.t + h - m.b) / 2, transform: `rotate(-90 12 ${(m.t + h - m.b) / 2})`, "text-anchor": "middle" }, svg).textContent = o.ylabel || "";
  if (o.title) el("text", { x: m.l, y: 13 }, svg).textContent = o.title;
  const g = el("g", {}, svg);
  return { svg, X, Y, g, m, w, h };
}
// many points as one path of zero-length round-capped segments: cheap for 10,000 points
function dots(p, xs, ys, color, r, label) {
  let d = "", n = 0;
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] === null || ys[i] === null || !isFinite(xs[i]) || !isFinite(ys[i])) continue;
    d += `M${p.X(xs[i]).toFixed(1)} ${p.Y(ys[i]).toFixed(1)}h0`;
    n++;
  }
  const e = el("path", { d, stroke: color, "stroke-width": 2 * (r || 3), "stroke-linecap": "round", "stroke-opacity": 0.75, fill: "none", "data-points": n }, p.g);
  if (label) e.setAttribute("data-label", label);
  return e;
}
function legend(p, items) {
  let x = p.w - p.m.r - items.reduce((a, [t]) => a + 22 + 6.2 * t.length, 0);
  for (const [text, color] of items) {
    el("rect", { x, y: 5, width: 9, height: 9, fill: color }, p.g);
    el("text", { x: x + 13, y: 13 }, p.g).textContent = text;
    x += 22 + 6.2 * text.length;
  }
}
function bars(items, color, w) {
  // items: [[label, value]] horizontal bars
  const h = 18 * items.length + 10, width = w || 360;
  const svg = el("svg", { width, height: h });
  const max = Math.max(...items.map((i) => Math.abs(i[1] ?? 0)), 1e-300);
  items.forEach(([label, v], i) => {
    const y = 5 + i * 18;
    el("text", { x: 110, y: y + 12, "text-anchor": "end" }, svg).textContent = label;
    el("rect", { x: 116, y, width: Math.max(1, ((width - 190) * Math.abs(v ?? 0)) / max), height: 13, fill: color || "#42a5f5" }, svg);
    el("text", { x: width - 70, y: y + 12 }, svg).textContent = fmt(v);
  });
  return svg;
}

// ------------------------------------------------------------------ progress
function renderSummary(s) {
  $("title").textContent = `${s.campaign}`;
  const st = $("state");
  st.textContent = s.finished ? `finished: ${s.finished.reason || ""}` : s.controller.running ? (s.paused ? "controller running, PAUSED" : "controller running") : (s.paused ? "no controller, paused" : "no controller");
  st.className = "badge " + (s.paused ? "paused" : s.controller.running ? "on" : "off");
  const b = s.budget, pct = Math.min(100, (100 * b.completed) / Math.max(1, b.trials));
  setHTML($("budget"), `<div class="bar"><div style="width:${pct}%"></div></div><p><b id="completed">${b.completed}</b> of ${b.trials} trials completed` +
    (s.best ? `; best <b>${fmt(s.best.value)}</b> (<a class="trial" data-t="${esc(s.best.trial_id)}">${esc(s.best.trial_id)}</a>)` : "") + `</p>` +
    (s.last_error ? `<p class="muted">last error: ${esc(s.last_error.stage)}: ${esc(s.last_error.error)}</p>` : ""));
  const states = Object.keys(s.trials).filter((k) => s.trials[k]);
  const rows = [["(none yet)", s.unassigned], ...s.drivers.map((d) => [d.name, d.trials])];
  setHTML($("bystate"), `<table><tr><th>driver</th>${states.map((k) => `<th class="num">${k}</th>`).join("")}</tr>` +
    rows.filter((r) => Object.keys(r[1] || {}).length).map(([n, c]) => `<tr><td>${esc(n)}</td>${states.map((k) => `<td class="num">${c[k] || ""}</td>`).join("")}</tr>`).join("") +
    `<tr><th>total</th>${states.map((k) => `<th class="num">${s.trials[k]}</th>`).join("")}</tr></table>`);
  setHTML($("drivers"), s.drivers.length ? `<table><tr><th>name</th><th>kind</th><th>status</th><th class="num">capacity</th><th>heartbeat</th><th>last trial activity</th></tr>` +
    s.drivers.map((d) => `<tr><td>${esc(d.name)}</td><td>${esc(d.kind)}</td><td>${esc(d.status)}</td><td class="num">${fmt(d.capacity)}</td><td class="heard">${d.seconds_since_heard == null ? "–" : d.seconds_since_heard.toFixed(1) + " s ago"}</td><td>${d.last_trial_activity ? Math.round(s.now - d.last_trial_activity) + " s ago" : "–"}</td></tr>`).join("") + "</table>"
    : `<p class="muted">no driver has connected</p>`);
  const pend = s.awaiting_approval;
  setHTML($("pending"), s.approval !== "manual" ? `<p class="muted">approval is automatic for this campaign</p>` :
    !pend.length ? `<p class="muted">nothing awaits approval</p>` :
    `<table>${pend.map((p) => `<tr data-pending="${esc(p.trial)}"><td><a class="trial" data-t="${esc(p.trial)}">${esc(p.trial)}</a></td><td>${esc(Object.entries(p.parameters).map(([k, v]) => `${k}=${fmt(v)}`).join(", "))}</td>` +
      `<td><button class="approve" data-t="${esc(p.trial)}">Approve</button> <input class="reason" placeholder="reason to reject" size="16"> <button class="reject" data-t="${esc(p.trial)}">Reject</button></td></tr>`).join("")}</table>`);
  if ($("suggest-fields") && !$("suggest-fields").childElementCount) $("suggest-fields").innerHTML = s.parameters.map((n) => `<label>${esc(n)} <input name="${esc(n)}" size="6"></label>`).join(" ");
  drawTimeline(s);
}
function drawTimeline(s) {
  const box = $("timeline");
  box.innerHTML = "";
  const tl = s.timeline;
  if (!tl.length) { box.innerHTML = `<p class="muted">no trial has started</p>`; return; }
  const drivers = [...new Set(tl.map((t) => t.driver))].sort();
  const t0 = Math.min(...tl.map((t) => t.start)), t1 = Math.max(s.now, ...tl.map((t) => t.end || 0));
  const h = 40 + 22 * drivers.length;
  const p = plot({ w: Math.min(1100, box.clientWidth || 900), h, x: [0, t1 - t0 || 1], y: [0, drivers.length], noY: true, xlabel: `seconds since ${when(t0)} UTC (latest ${tl.length} trial${tl.length === 1 ? "" : "s"})` });
  drivers.forEach((d, i) => { el("text", { x: 4, y: p.Y(i + 0.5) + 4 }, p.svg).textContent = d.slice(0, 9); });
  const color = { completed: "#43a047", failed: "#e53935", running: "#1e88e5", abandoned: "#9e9e9e" };
  for (const t of tl) {
    const i = drivers.indexOf(t.driver), x0 = p.X(t.start - t0), x1 = p.X((t.end || s.now) - t0);
    const r = el("rect", { x: x0, y: p.Y(i + 0.85), width: Math.max(1.5, x1 - x0), height: p.Y(i + 0.15) - p.Y(i + 0.85), fill: color[t.status] || "#fb8c00" }, p.g);
    el("title", {}, r).textContent = `${t.trial} ${t.status}`;
  }
  box.appendChild(p.svg);
}

// ------------------------------------------------------------------ results
function renderSeries(d) {
  if (!changed($("view-results"), d)) return;
  const objs = Object.keys(d.objectives), o = objs[0], n = d.number;
  const best = $("best");
  best.innerHTML = "";
  if (!n.length) { best.innerHTML = `<p class="muted">no completed trial yet</p>`; }
  else for (const name of objs) {
    const y = d.objectives[name], sign = d.goals[name] === "maximize" ? -1 : 1;
    const p = plot({ w: 640, x: range([...n, n[0] - 1, n[n.length - 1] + 1]), y: range(y), xlabel: "trial number", ylabel: name, title: `${d.goals[name]} ${name} (shaded: initial design)`, legend: true });
    const init = n.filter((_, i) => d.kind[i] === "sobol");
    if (init.length) el("rect", { x: p.X(Math.min(...init) - 0.5), y: p.m.t, width: p.X(Math.max(...init) + 0.5) - p.X(Math.min(...init) - 0.5), height: p.h - p.m.t - p.m.b, fill: "#9e9e9e", "fill-opacity": 0.18, class: "initial" }, p.g);
    const kinds = [...new Set(d.kind)];
    kinds.forEach((k, j) => dots(p, n.filter((_, i) => d.kind[i] === k), y.filter((_, i) => d.kind[i] === k), COLORS[k] || ["#1e88e5", "#fb8c00", "#43a047"][j % 3], 3, k));
    let b = null, path = "";
    n.forEach((x, i) => {  // a step: flat until a trial beats the best so far
      if (y[i] === null) return;
      if (b === null || sign * y[i] < sign * b) b = y[i];
      path += path ? `H${p.X(x).toFixed(1)}V${p.Y(b).toFixed(1)}` : `M${p.X(x).toFixed(1)} ${p.Y(b).toFixed(1)}`;
    });
    el("path", { d: path, stroke: "#000", fill: "none", "stroke-width": 1.5, class: "best-line" }, p.g);
    legend(p, [...kinds.map((k, j) => [k === "sobol" ? "initial design (Sobol)" : k, COLORS[k] || ["#1e88e5", "#fb8c00", "#43a047"][j % 3]]), ["best so far", "#000"]]);
    best.appendChild(p.svg);
    if (d.pareto) break;
  }
  $("best-title").textContent = d.pareto ? `${o} against trials` : "Best so far";
  $("front-card").hidden = !d.pareto;
  if (d.pareto) {
    const [a, b] = objs, xa = d.objectives[a], yb = d.objectives[b], on = new Set(d.pareto.on_front);
    const p = plot({ w: 420, h: 300, x: range(xa), y: range(yb), xlabel: `${a} (${d.goals[a]})`, ylabel: `${b} (${d.goals[b]})`, legend: true });
    dots(p, xa.filter((_, i) => !on.has(i)), yb.filter((_, i) => !on.has(i)), "#90a4ae", 3, "dominated");
    const f = d.pareto.on_front.slice().sort((i, j) => xa[i] - xa[j]);
    if (objs.length === 2) el("path", { d: f.map((i, k) => `${k ? "L" : "M"}${p.X(xa[i]).toFixed(1)} ${p.Y(yb[i]).toFixed(1)}`).join(""), stroke: COLORS.front, fill: "none", "stroke-dasharray": "3 2" }, p.g);
    dots(p, f.map((i) => xa[i]), f.map((i) => yb[i]), COLORS.front, 4, "front").setAttribute("id", "front-points");
    legend(p, [[objs.length === 2 ? "Pareto front" : `front of all ${objs.length} objectives`, COLORS.front], ["dominated", "#90a4ae"]]);
    $("front").replaceChildren(p.svg);
    const hv = d.pareto.hv, at = d.pareto.hv_at;
    const q = plot({ w: 420, h: 300, x: range([0, ...at]), y: range([0, ...hv]), xlabel: "completed trials", ylabel: "hypervolume (ref: worst seen)" });
    el("path", { d: at.map((x, i) => `${i ? "L" : "M"}${q.X(x).toFixed(1)} ${q.Y(hv[i]).toFixed(1)}`).join(""), stroke: "#000", fill: "none", "stroke-width": 1.5 }, q.g);
    $("hv").replaceChildren(q.svg);
  }
  const grid = $("params");
  grid.innerHTML = "";
  for (const [k, xs] of Object.entries(d.params)) {
    for (const name of objs) {
      const y = d.objectives[name];
      let x = xs, labels = null;
      if (xs.some((v) => typeof v === "string")) { labels = [...new Set(xs)].sort(); x = xs.map((v) => labels.indexOf(v)); }
      const p = plot({ w: 300, h: 220, x: range(x), y: range(y), xlabel: labels ? `${k} (${labels.join(", ")})` : k, ylabel: name });
      dots(p, x, y, "#1e88e5", 2.5, k);
      grid.appendChild(p.svg);
    }
  }
}

// ------------------------------------------------------------------ trial table
const STATES = ["proposed", "approved", "running", "completed", "failed", "abandoned", "rejected"];
async function loadTrials() {
  const q = new URLSearchParams({ page: state.page, size: state.size, sort: state.sort, desc: state.desc ? 1 : 0, status: $("f-status").value, q: $("f-q").value });
  const d = await getJSON("/api/trials?" + q);
  if (!changed($("table"), d)) return;
  state.page = d.page;
  const objs = state.cfg.objectives, params = d.trials.length ? Object.keys(d.trials[0].parameters) : state.cfg.parameters;
  const cols = [["trial", "number"], ["status", "status"], ...objs.map((o) => [o, o]), ...params.map((p) => [p, null]), ["chosen by", "origin"], ["measured by", "driver"], ["driver version", null], ["started", "started_at"], ["finished", "finished_at"]];
  $("table").tHead.innerHTML = "<tr>" + cols.map(([l, k]) => k ? `<th data-sort="${k}">${esc(l)}${state.sort === k ? (state.desc ? " ▼" : " ▲") : ""}</th>` : `<th>${esc(l)}</th>`).join("") + "</tr>";
  $("table").tBodies[0].innerHTML = d.trials.map((t) => `<tr data-trial="${esc(t.trial)}"><td><a class="trial" data-t="${esc(t.trial)}">${esc(t.trial)}</a></td><td>${esc(t.status)}</td>` +
    objs.map((o) => `<td class="num">${fmt(t.outcomes[o])}</td>`).join("") + params.map((p) => `<td class="num">${esc(fmt(t.parameters[p]))}</td>`).join("") +
    `<td>${esc(t.chosen_by)}</td><td>${esc(t.measured_by || "–")}</td><td>${esc(t.driver_version || "–")}</td><td>${when(t.started_at)}</td><td>${when(t.finished_at)}</td></tr>`).join("");
  $("pager").innerHTML = `<button type="button" data-page="${d.page - 1}" ${d.page <= 1 ? "disabled" : ""}>‹</button> page ${d.page} of ${d.pages} (${d.total} trials) <button type="button" data-page="${d.page + 1}" ${d.page >= d.pages ? "disabled" : ""}>›</button>`;
}

// ------------------------------------------------------------------ why a trial was chosen
async function loadWhy() {
  const box = $("why");
  if (!state.trial) { box.innerHTML = `<p class="muted">pick a trial (click one anywhere on the page)</p>`; return; }
  let t;
  try { t = await getJSON("/api/trial/" + encodeURIComponent(state.trial)); } catch (e) { box.innerHTML = `<p>no trial ${esc(state.trial)}</p>`; return; }
  if (!changed(box, t)) return;
  const pr = t.proposal;
  let html = `<h3>${esc(t.trial)}: ${esc(t.status)}</h3><p>${esc(Object.entries(t.parameters).map(([k, v]) => `${k}=${fmt(v)}`).join(", "))}</p>` +
    `<p>observed: ${Object.entries(t.outcomes).map(([k, v]) => `${esc(k)} = <b>${fmt(v.value)}</b>`).join(", ") || "nothing yet"}; measured by ${esc(t.driver || "–")}</p>`;
  if (!pr) html += `<p>not proposed by a strategy: origin <b>${esc(t.origin)}</b></p>`;
  else {
    html += `<p>chosen by <b>${esc(pr.strategy)}</b> (${esc(pr.version)}, seed ${pr.seed}, proposal ${esc(pr.id)})` +
      (pr.n_train !== null && pr.n_train !== undefined ? ` from ${pr.n_train} results (data ${esc(String(pr.data_hash).slice(0, 12))})` : "") + `</p>` +
      (pr.why ? `<p>strategy: ${esc(pr.why)}</p>` : "") + (pr.surrogate ? `<p>surrogate: <b>${esc(pr.surrogate.chosen)}</b>, ${esc(pr.surrogate.reason)}</p>` : "") +
      (pr.acquisition_function ? `<p>acquisition: ${esc(pr.acquisition_function)}${pr.noise !== null && pr.noise !== undefined ? `, fitted noise ${fmt(pr.noise)}` : ""}</p>` : "") +
      (pr.warnings.length ? `<p class="muted">warnings: ${esc(pr.warnings.join("; "))}</p>` : "") + `<div class="row" id="why-charts"></div>`;
  }
  html += `<h3>Events</h3><table class="compact">${t.events.map((e) => `<tr><td class="num">${e.seq}</td><td>${when(e.time)}</td><td>${esc(e.text)}</td></tr>`).join("")}</table>`;
  box.innerHTML = html;
  if (!pr) return;
  const charts = $("why-charts");
  if (pr.predicted) {
    for (const [name, ms] of Object.entries(pr.predicted)) {
      const [mu, sd] = ms, obs = t.outcomes[name] ? t.outcomes[name].value : null;
      const p = plot({ w: 300, h: 200, x: [0, 1], noX: true, y: range([mu - 2.2 * sd, mu + 2.2 * sd, obs]), ylabel: name, title: "prediction ±2 sd, and what was observed" });
      el("line", { x1: p.X(0.35), x2: p.X(0.35), y1: p.Y(mu - 2 * sd), y2: p.Y(mu + 2 * sd), stroke: "#1e88e5", "stroke-width": 3 }, p.g);
      el("circle", { cx: p.X(0.35), cy: p.Y(mu), r: 5, fill: "#1e88e5", class: "predicted" }, p.g);
      el("text", { x: p.X(0.35), y: p.h - 22, "text-anchor": "middle" }, p.g).textContent = `predicted ${fmt(mu)} ± ${fmt(sd)}`;
      if (obs !== null) { el("circle", { cx: p.X(0.65), cy: p.Y(obs), r: 5, fill: "#e53935" }, p.g); el("text", { x: p.X(0.75), y: p.h - 8, "text-anchor": "middle" }, p.g).textContent = `observed ${fmt(obs)}`; }
      charts.appendChild(p.svg);
    }
  }
  if (pr.alternatives.length) {
    const d = document.createElement("div");
    d.innerHTML = `<div><b>acquisition value: this trial (◀) against the others of its batch</b></div>`;
    d.appendChild(bars(pr.alternatives.map((a) => [a.trial + (a.trial === t.trial ? " ◀" : ""), a.acquisition]), "#8e24aa"));
    charts.appendChild(d);
  }
  if (pr.importance) {
    const d = document.createElement("div");
    d.innerHTML = `<div><b>parameter importance (1 / lengthscale)</b></div>`;
    d.appendChild(bars(pr.importance.map((i) => [i.input, i.importance]), "#43a047"));
    d.setAttribute("id", "importance");
    charts.appendChild(d);
  }
}

// ------------------------------------------------------------------ the model's leave-one-out check
// fitted on request in the server's worker thread (when the view opens, or "Update"), kept
// until the campaign records a new event; while it fits, the page asks again every 0.7 s
let looTimer = null;
async function loadLoo(compute) {
  const d = await getJSON("/api/model-check" + (compute ? "?compute=1" : ""));
  const shown = d.state === "ready" ? d : d.previous;
  let note = "";
  if (d.state === "computing") note = `fitting the model… ${Math.round(d.for_s)} s` + (shown ? " (showing the previous check)" : "");
  else if (d.state === "stale") note = "new results since this check";
  const button = d.state === "computing" ? "" : `<button type="button" id="loo-run">${shown ? "Update" : "Compute"}</button> `;
  setHTML($("loo-state"), button + `<span class="muted">${esc(note)}</span>`);
  document.body.dataset.loo = d.state;
  drawLoo(shown);
  clearTimeout(looTimer);
  if (d.state === "computing") looTimer = setTimeout(() => { if (state.view === "why") loadLoo(false); }, 700);
}
function drawLoo(a) {
  const box = $("loo");
  if (!changed(box, a ? [a.head, a.error, a.unavailable] : null)) return;
  if (!a) { box.innerHTML = ""; return; }
  if (a.error) { box.innerHTML = `<p>the model could not be checked: ${esc(a.error)}</p>`; return; }
  if (a.unavailable) { box.innerHTML = `<p class="muted">no model check: ${esc(a.unavailable)}</p>`; return; }
  const o = a.observed, m = a.predicted, s = a.sd, n = o.length;
  // one range for both axes: the diagonal is a perfect prediction
  const r = range([...o, ...m.map((v, i) => v - 2 * s[i]), ...m.map((v, i) => v + 2 * s[i])]);
  const p = plot({ w: 460, h: 430, x: r, y: r, legend: true, xlabel: `observed ${a.objective}`, ylabel: `predicted ${a.objective}, that trial left out` });
  el("line", { x1: p.X(r[0]), y1: p.Y(r[0]), x2: p.X(r[1]), y2: p.Y(r[1]), stroke: "#000", "stroke-width": 1 }, p.g);
  let bars = "";
  for (let i = 0; i < n; i++) bars += `M${p.X(o[i]).toFixed(1)} ${p.Y(m[i] - 2 * s[i]).toFixed(1)}V${p.Y(m[i] + 2 * s[i]).toFixed(1)}`;
  el("path", { d: bars, stroke: "#1e88e5", "stroke-opacity": 0.4, "stroke-width": 1.2, fill: "none", id: "loo-bars", "data-bars": n }, p.g);
  dots(p, o, m, "#1565c0", 2.5, "leave-one-out").setAttribute("id", "loo-points");
  legend(p, [["prediction ±2 sd", "#1e88e5"], ["perfect prediction", "#000"]]);
  const text = document.createElement("div");
  text.innerHTML = `<p><b>${Math.round(100 * a.within_2sd)}%</b> of ${n} observations lie within their prediction's ±2 sd (about 95% if the model's uncertainty is honest).</p>` +
    `<p class="muted">the GP fitted to the ${a.completed} completed trials (as of event ${a.head}), each predicted from all the others with the same hyperparameters; ${fmt(+a.seconds.toFixed(2))} s to fit and predict${a.notes.length ? "; " + esc(a.notes.join("; ")) : ""}</p>`;
  const row = document.createElement("div");
  row.className = "row";
  row.append(p.svg, text);
  text.style.maxWidth = "28em";
  box.replaceChildren(row);
}

// ------------------------------------------------------------------ actions
function say(text, ok) { const m = $("msg"); m.textContent = text; m.className = ok ? "ok" : "err"; }
async function act(body) {
  body.operator = $("operator").value;
  localStorage.setItem("loopctl-operator", body.operator);
  const token = $("token").value;
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Loopctl-Token"] = token;
  let r, d;
  try { r = await fetch("/api/action", { method: "POST", headers, body: JSON.stringify(body) }); d = await r.json(); }
  catch (e) { say("the dashboard did not answer: " + e, false); return; }
  say(d.ok ? d.message : `refused (${r.status}): ${d.error}`, d.ok);
  refresh();
}
document.addEventListener("click", (e) => {
  const t = e.target;
  if (t.matches("a.trial")) { state.trial = t.dataset.t; location.hash = "#why"; show("why"); }
  else if (t.matches("button.approve")) act({ action: "approve", trials: [t.dataset.t] });
  else if (t.matches("button.reject")) act({ action: "reject", trials: [t.dataset.t], reason: t.parentElement.querySelector(".reason").value });
  else if (t.id === "loo-run") loadLoo(true);
  else if (t.id === "pause") act({ action: "pause" });
  else if (t.id === "unpause") act({ action: "unpause" });
  else if (t.matches("th[data-sort]")) { const k = t.dataset.sort; state.desc = state.sort === k ? !state.desc : false; state.sort = k; loadTrials(); }
  else if (t.matches("#pager button")) { state.page = +t.dataset.page; loadTrials(); }
});
$("suggest").addEventListener("submit", (e) => {
  e.preventDefault();
  const params = {};
  for (const i of $("suggest").querySelectorAll("input")) if (i.value !== "") params[i.name] = isNaN(+i.value) ? i.value : +i.value;
  act({ action: "suggest", parameters: params });
});
$("filter").addEventListener("submit", (e) => { e.preventDefault(); state.page = 1; loadTrials(); });
$("pick").addEventListener("submit", (e) => { e.preventDefault(); state.trial = $("pick-id").value.trim(); loadWhy(); });

// ------------------------------------------------------------------ views and live updates
function show(view) {
  state.view = view;
  for (const v of ["progress", "results", "trials", "why"]) $("view-" + v).hidden = v !== view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  if (view === "why") { $("pick-id").value = state.trial; state.looAsk = true; }
  return refresh();
}
let busy = null, again = false;
async function refresh() {
  if (busy) { again = true; return busy; }
  busy = (async () => {
    try {
      const jobs = [getJSON("/api/summary").then(renderSummary)];
      if (state.view === "results") jobs.push(getJSON("/api/series").then(renderSeries));
      if (state.view === "trials") jobs.push(loadTrials());
      if (state.view === "why") { jobs.push(loadWhy(), loadLoo(state.looAsk)); state.looAsk = false; }
      await Promise.all(jobs);
      document.body.dataset.rendered = String(Date.now());
      document.body.dataset.view = state.view;
    } catch (e) { say("could not read the campaign: " + e.message, false); }
  })();
  await busy;
  busy = null;
  if (again) { again = false; return refresh(); }
}
function live() {
  const src = new EventSource("/api/stream");
  src.addEventListener("change", async (e) => {
    const head = JSON.parse(e.data).head;
    await refresh();
    $("live").textContent = `live · event ${head}`;
    $("live").className = "badge on";
    document.body.dataset.head = head;
  });
  src.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "badge off"; };
}
async function start() {
  state.cfg = await getJSON("/api/config");
  const url = new URL(location.href), token = url.searchParams.get("token");
  if (token) { $("token").value = token; url.searchParams.delete("token"); history.replaceState(null, "", url); }
  $("operator").value = localStorage.getItem("loopctl-operator") || state.cfg.operator;
  if (!state.cfg.actions) {
    $("controls").innerHTML = `<h2>Operator</h2><p class="muted">read-only: ${esc(state.cfg.read_only_reason)}</p>`;
    $("token").disabled = true;
    document.body.classList.add("read-only");
  }
  for (const s of STATES) $("f-status").insertAdjacentHTML("beforeend", `<option>${s}</option>`);
  window.addEventListener("hashchange", () => show(location.hash.slice(1) || "progress"));
  const [view, tid] = (location.hash.slice(1) || "progress").split("/");
  if (tid) state.trial = tid;
  await show(["progress", "results", "trials", "why"].includes(view) ? view : "progress");
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // bench/dashboard_load.py
  document.body.dataset.ready = "1";
  live();
}
start();
