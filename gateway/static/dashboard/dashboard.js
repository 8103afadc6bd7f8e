// hetserve fleet dashboard: polls the gateway's JSON endpoints and draws with plain SVG.
// No build step and no third-party code. State for tests lives in data-* attributes of <body>.
"use strict";

const POLL_MS = 1000;          // /v1/fleet and /v1/requests/recent
const PROFILE_EVERY = 10;      // profiles (heat maps) every N polls
const WINDOW_S = 300;          // charts show the last five minutes
const JPT_POLLS = 5;           // J/token over the last five polls: one poll's few tokens make spikes
const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"];
const SVG_NS = "http://www.w3.org/2000/svg";

const key = new URLSearchParams(location.hash.slice(1)).get("key") || sessionStorage.getItem("hetserve-key");
if (key) sessionStorage.setItem("hetserve-key", key);

const state = {
  polls: 0, lastSeq: 0, requestsSeen: 0,
  colours: {},        // pool -> colour
  samples: [],        // {t, pools: {name: {load, watts, jpt, share}}}
  recentPolls: [],    // the last JPT_POLLS+1 /v1/fleet pools by name (for J/token deltas)
  totals: [],         // {t, energy, tokens} of the whole fleet, for the last-minute figures
  finished: [],       // Unix times of finished requests seen, for req/s
};

async function getJSON(path) {
  const r = await fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {} });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function colour(pool) {
  if (!(pool in state.colours)) state.colours[pool] = PALETTE[Object.keys(state.colours).length % PALETTE.length];
  return state.colours[pool];
}

function el(tag, attrs = {}, text) {
  const e = tag === "svg" || ["rect", "path", "line", "text", "g", "polyline", "pattern", "defs", "title"].includes(tag)
    ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const fmt = (v, d = 2) => v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(d);

// -- polling -------------------------------------------------------------

async function poll() {
  const withProfiles = state.polls % PROFILE_EVERY === 0;
  const [fleet, recent] = await Promise.all([
    getJSON("/v1/fleet?profiles=" + withProfiles),
    getJSON("/v1/requests/recent?after=" + state.lastSeq + "&limit=256"),
  ]);
  const now = Date.now() / 1000;
  const fresh = recent.requests;
  state.lastSeq = recent.last_seq;
  state.requestsSeen += fresh.length;
  for (const r of fresh) state.finished.push(r.finished);
  record(now, fleet.pools, fresh);
  drawHeader(fleet, recent, now);
  drawPools(fleet.pools);
  drawCharts(now);
  drawRequests(fresh);
  if (withProfiles) drawHeatmaps(fleet.pools);
  state.polls += 1;
  document.body.dataset.polls = state.polls;
  document.body.dataset.requestsSeen = state.requestsSeen;
}

function record(now, pools, fresh) {
  const counts = {};
  for (const r of fresh) counts[r.pool] = (counts[r.pool] || 0) + 1;
  const sample = { t: now, pools: {} };
  let energy = 0, tokens = 0;
  const past = state.recentPolls.length ? state.recentPolls[0] : null;
  for (const p of pools) {
    colour(p.name);
    const prev = past && past[p.name];
    const dTok = prev ? p.output_tokens - prev.output_tokens : 0;
    const dJ = prev ? p.energy_joules - prev.energy_joules : 0;
    sample.pools[p.name] = {
      load: Math.max(p.in_flight, p.running + p.waiting) / Math.max(p.capacity, 1),
      watts: p.watts,
      jpt: dTok > 0 ? dJ / dTok : null,
      share: fresh.length ? (counts[p.name] || 0) / fresh.length : null,
    };
    energy += p.energy_joules;
    tokens += p.output_tokens;
  }
  state.recentPolls.push(Object.fromEntries(pools.map(p => [p.name, p])));
  if (state.recentPolls.length > JPT_POLLS) state.recentPolls.shift();
  state.samples.push(sample);
  state.totals.push({ t: now, energy, tokens });
  while (state.samples.length && state.samples[0].t < now - WINDOW_S) state.samples.shift();
  while (state.totals.length && state.totals[0].t < now - 60) state.totals.shift();
  while (state.finished.length && state.finished[0] < now - 60) state.finished.shift();
}

// -- header and tables ---------------------------------------------------

function drawHeader(fleet, recent, now) {
  document.getElementById("policy").textContent = recent.policy || fleet.policy || "–";
  document.getElementById("routing").textContent = JSON.stringify(recent.routing);
  document.getElementById("watts").textContent = fmt(fleet.pools.reduce((s, p) => s + p.watts, 0), 0);
  const first = state.totals[0], last = state.totals[state.totals.length - 1];
  const dTok = last.tokens - first.tokens;
  document.getElementById("jpt").textContent = dTok > 0 ? fmt((last.energy - first.energy) / dTok, 3) : "–";
  const span = Math.min(60, Math.max(1, now - (state.samples[0] ? state.samples[0].t : now)));
  document.getElementById("rate").textContent = fmt(state.finished.length / span, 2);
  document.getElementById("status").textContent = "live";
  document.getElementById("window").textContent = "(last " + WINDOW_S / 60 + " minutes, polled every " + POLL_MS / 1000 + " s)";
}

function drawPools(pools) {
  const body = document.querySelector("#pools tbody");
  body.replaceChildren(...pools.map(p => {
    const tr = el("tr", { "data-pool": p.name });
    const name = el("td");
    name.append(el("span", { class: "swatch", style: "background:" + colour(p.name) }), p.name);
    const load = Math.max(p.in_flight, p.running + p.waiting) / Math.max(p.capacity, 1);
    const bar = el("td");
    const box = el("span", { class: "barbox" });
    box.append(el("span", { class: "bar", style: "width:" + Math.min(100, load * 100).toFixed(0) + "%" }));
    bar.append(box, (load * 100).toFixed(0) + " %");
    const st = el("td", { class: p.healthy ? "text" : "text down" },
      p.healthy ? "healthy" : (p.starting ? "starting" : (p.ejected_for_s ? "ejected" : "down")));
    const jpt = p.output_tokens ? p.energy_joules / p.output_tokens : null;
    tr.append(
      name, el("td", { class: "text" }, p.hardware + (p.emulated ? " (emulated)" : "")), el("td", { class: "text" }, p.engine),
      st, bar, el("td", {}, p.in_flight), el("td", {}, p.running), el("td", {}, p.waiting),
      el("td", {}, fmt(p.watts, 1)), el("td", { class: "text" }, p.power_source),
      el("td", {}, fmt(jpt, 3)), el("td", {}, p.output_tokens),
    );
    return tr;
  }));
}

function drawRequests(fresh) {
  const body = document.querySelector("#requests tbody");
  for (const r of fresh) {
    const tr = el("tr", { "data-seq": r.seq });
    const pool = el("td", { class: "text" });
    pool.append(el("span", { class: "swatch", style: "background:" + colour(r.pool) }), r.pool);
    tr.append(
      el("td", {}, new Date(r.finished * 1000).toLocaleTimeString()), el("td", { class: "text" }, r.model), pool,
      el("td", { class: "reason" }, r.route_reason), el("td", {}, r.prompt_tokens), el("td", {}, r.output_tokens),
      el("td", {}, fmt(r.ttft_ms, 0)), el("td", {}, fmt(r.e2e_ms, 0)), el("td", {}, fmt(r.energy_j, 2)),
    );
    body.prepend(tr);
  }
  while (body.children.length > 15) body.lastChild.remove();
}

// -- charts --------------------------------------------------------------

const CHART = { w: 560, h: 200, l: 48, r: 10, t: 8, b: 22 };

function axes(svg, now, yMax, yFmt) {
  const { w, h, l, r, t, b } = CHART;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const y = t + (h - t - b) * (1 - i / 4);
    svg.append(el("line", { class: "grid", x1: l, x2: w - r, y1: y, y2: y }));
    svg.append(el("text", { class: "axis", x: l - 4, y: y + 3, "text-anchor": "end" }, yFmt(yMax * i / 4)));
  }
  for (let s = 0; s <= WINDOW_S; s += 60) {
    const x = l + (w - l - r) * (1 - s / WINDOW_S);
    svg.append(el("text", { class: "axis", x, y: h - 6, "text-anchor": "middle" }, s ? "-" + s / 60 + " min" : "now"));
  }
  return {
    x: tt => l + (w - l - r) * (1 - (now - tt) / WINDOW_S),
    y: v => t + (h - t - b) * (1 - Math.min(v, yMax) / yMax),
  };
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 2.5, 5, 10].map(m => m * p).find(m => m >= v);
}

function lineChart(id, field, now, yFmt, fixedMax) {
  const svg = document.getElementById(id);
  const names = Object.keys(state.colours);
  const values = state.samples.flatMap(s => names.map(n => s.pools[n] && s.pools[n][field])).filter(v => v !== null && v !== undefined);
  const scale = axes(svg, now, fixedMax || niceMax(Math.max(0, ...values)), yFmt);
  let points = 0;
  for (const name of names) {
    let d = "", pen = false;
    for (const s of state.samples) {
      const v = s.pools[name] && s.pools[name][field];
      if (v === null || v === undefined) { pen = false; continue; }
      d += (pen ? "L" : "M") + scale.x(s.t).toFixed(1) + "," + scale.y(v).toFixed(1);
      pen = true;
      points += 1;
    }
    if (d) svg.append(el("path", { d, fill: "none", stroke: colour(name), "stroke-width": 1.8, "data-pool": name }));
  }
  svg.dataset.points = points;
}

function shareChart(now) {
  const svg = document.getElementById("chart-share");
  const scale = axes(svg, now, 1, v => (v * 100).toFixed(0) + "%");
  const width = Math.max(1.5, (CHART.w - CHART.l - CHART.r) * (POLL_MS / 1000) / WINDOW_S);
  let bars = 0;
  for (const s of state.samples) {
    let acc = 0;
    for (const name of Object.keys(state.colours)) {
      const v = s.pools[name] && s.pools[name].share;
      if (!v) continue;
      const y0 = scale.y(acc), y1 = scale.y(acc + v);
      svg.append(el("rect", { x: (scale.x(s.t) - width).toFixed(1), y: y1.toFixed(1), width: width.toFixed(1),
        height: Math.max(0, y0 - y1).toFixed(1), fill: colour(name), "data-pool": name }));
      acc += v;
      bars += 1;
    }
  }
  svg.dataset.points = bars;
}

function drawCharts(now) {
  lineChart("chart-load", "load", now, v => (v * 100).toFixed(0) + "%");
  lineChart("chart-power", "watts", now, v => v.toFixed(0));
  lineChart("chart-jpt", "jpt", now, v => v.toPrecision(2));
  shareChart(now);
  const legend = document.getElementById("legend");
  legend.replaceChildren(...Object.keys(state.colours).map(n => {
    const s = el("span", { class: "item" });
    s.append(el("span", { class: "swatch", style: "background:" + colour(n) }), n);
    return s;
  }));
}

// -- heat maps -----------------------------------------------------------

// Viridis, sampled: low J/token dark blue, high yellow.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(f) {
  const x = Math.max(0, Math.min(1, f)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), u = x - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * u));
  return { fill: `rgb(${c})`, dark: f < 0.6 };
}

function drawHeatmaps(pools) {
  const box = document.getElementById("heatmaps");
  const profiled = pools.filter(p => p.profile && p.profile.cells);
  const all = profiled.flatMap(p => p.profile.cells.map(c => c.j_per_token)).filter(v => v > 0);
  if (!all.length) { box.replaceChildren(el("p", { class: "k" }, "no profiles yet")); return; }
  const lo = Math.log(Math.min(...all)), hi = Math.log(Math.max(...all));
  box.replaceChildren(...profiled.map(p => heatmap(p, lo, hi)));
}

function heatmap(pool, lo, hi) {
  const prof = pool.profile, cw = 54, ch = 22, left = 46, top = 20;
  const seqs = prof.seq_buckets, batches = prof.batch_buckets;
  const w = left + cw * seqs.length + 4, h = top + ch * batches.length + 28;
  const svg = el("svg", { class: "heatmap", viewBox: `0 0 ${w} ${h}`, width: w, height: h, "data-pool": pool.name });
  const defs = el("defs");
  const pat = el("pattern", { id: "hatch-" + pool.name, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  pat.append(el("rect", { width: 6, height: 6, fill: "#f3f3f3" }), el("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c66", "stroke-width": 2 }));
  defs.append(pat);
  svg.append(defs);
  const cells = {};
  for (const c of prof.cells) cells[c.batch + "x" + c.seq_len] = c;
  batches.forEach((b, i) => svg.append(el("text", { class: "axis", x: left - 4, y: top + ch * i + ch / 2 + 3, "text-anchor": "end" }, "b" + b)));
  seqs.forEach((s, j) => svg.append(el("text", { class: "axis", x: left + cw * j + cw / 2, y: top - 6, "text-anchor": "middle" }, s >= 1024 ? s / 1024 + "k" : s)));
  svg.append(el("text", { class: "axis", x: left, y: h - 6 }, "sequence length →   batch ↓"));
  batches.forEach((b, i) => seqs.forEach((s, j) => {
    const c = cells[b + "x" + s], x = left + cw * j, y = top + ch * i;
    let fill = "#ddd", dark = false, label = "";
    if (c && c.feasible === false) fill = `url(#hatch-${pool.name})`;
    else if (c && c.j_per_token > 0) {
      const col = viridis(hi > lo ? (Math.log(c.j_per_token) - lo) / (hi - lo) : 0.5);
      fill = col.fill; dark = col.dark; label = c.j_per_token.toPrecision(2);
    }
    const rect = el("rect", { x, y, width: cw - 1, height: ch - 1, fill, class: "cell" });
    rect.append(el("title", {}, `${pool.name} batch ${b}, seq ${s}: ` + (c ? JSON.stringify(c) : "no data")));
    svg.append(rect);
    if (label) svg.append(el("text", { x: x + cw / 2, y: y + ch / 2 + 4, "text-anchor": "middle", "font-size": 10, fill: dark ? "#fff" : "#222" }, label));
    if (c && c.provenance && c.provenance !== "modelled")
      svg.append(el("text", { x: x + cw - 4, y: y + 8, "text-anchor": "end", "font-size": 7, fill: dark ? "#fff" : "#222" }, c.provenance[0]));
  }));
  const fig = el("figure");
  fig.append(el("figcaption", {}, `${pool.name} · ${prof.hardware} · ${prof.model}`), svg);
  return fig;
}

// -- loop ----------------------------------------------------------------

async function loop() {
  try {
    await poll();
  } catch (err) {
    document.getElementById("status").textContent = "error";
    document.body.dataset.error = String(err);
  }
  setTimeout(loop, POLL_MS);
}

loop();
