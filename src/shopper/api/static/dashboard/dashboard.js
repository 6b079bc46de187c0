// shopper's dashboard: plots GET v1/dashboard/series (snapshots of /v1/stats, /v1/experiments
// and the page reads, taken by the API process) as hand-written SVG, then polls for new ones.
"use strict";
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 640, H = 220, M = { top: 10, right: 14, bottom: 24, left: 58 };
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
  const MAX_SAMPLES = 720;
  const SERIES_URL = "v1/dashboard/series";

  let samples = [];
  let intervalS = 5;

  // Values may be missing or null anywhere (a variant with no sessions, a counter not yet
  // there): every read goes through these.
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const get = (obj, ...path) => path.reduce((o, k) => (o == null ? undefined : o[k]), obj);

  const digits = (v, small) => (v === 0 ? "0" : v.toFixed(Math.abs(v) < small ? 2 : Math.abs(v) < 10 * small ? 1 : 0));
  const fmt = {
    pct: (v) => `${digits(100 * v, 1)}%`,
    ms: (v) => `${digits(v, 1)} ms`,
    money: (v) => (v === 0 ? "0" : v.toFixed(2)),
    count: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
    rate: (v) => `${digits(v, 1)}/s`,
  };
  const show = (v, f) => (num(v) === null ? "–" : f(v));

  // Series builders: each gives [{name, points: [[at, y|null]], band?: [[at, low, high]]}].

  function variantSeries(metric) {
    const byName = new Map();
    for (const s of samples) {
      for (const v of get(s, "experiments", "variants") || []) {
        if (!v || typeof v.name !== "string") continue;
        if (!byName.has(v.name)) byName.set(v.name, { name: v.name, points: [], band: [] });
        const m = v[metric] || {};
        byName.get(v.name).points.push([s.at, num(m.value)]);
        byName.get(v.name).band.push([s.at, num(m.low), num(m.high)]);
      }
    }
    return [...byName.values()];
  }

  const fieldSeries = (name, pick) => ({ name, points: samples.map((s) => [s.at, num(pick(s))]) });

  function rateSeries(name, pick) {
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const a = num(pick(samples[i - 1])), b = num(pick(samples[i]));
      const dt = samples[i].at - samples[i - 1].at;
      const ok = a !== null && b !== null && dt > 0 && b >= a; // a restart resets counters
      points.push([samples[i].at, ok ? (b - a) / dt : null]);
    }
    return { name, points };
  }

  // Each name's share of what was added to counts (a {name: total} map) between samples;
  // null where nothing was added.
  function shareSeries(pickCounts) {
    const names = new Set();
    for (const s of samples) Object.keys(pickCounts(s) || {}).forEach((k) => names.add(k));
    const out = [...names].sort().map((name) => ({ name, points: [] }));
    for (let i = 1; i < samples.length; i++) {
      const now = pickCounts(samples[i]) || {}, before = pickCounts(samples[i - 1]) || {};
      const added = out.map((o) => Math.max(0, (num(now[o.name]) || 0) - (num(before[o.name]) || 0)));
      const total = added.reduce((a, b) => a + b, 0);
      out.forEach((o, j) => o.points.push([samples[i].at, total > 0 ? added[j] / total : null]));
    }
    return out;
  }

  const freshness = (q) => (s) =>
    num(get(s, "stats", "lists_written")) ? get(s, "stats", `freshness_${q}_ms`) : null;

  const CHARTS = [
    { id: "conversion", title: "Conversion rate per variant (band: confidence interval)",
      format: fmt.pct, zero: true, series: () => variantSeries("conversion_rate") },
    { id: "revenue", title: "Revenue per session per variant (band: confidence interval)",
      format: fmt.money, zero: true, series: () => variantSeries("revenue_per_session") },
    { id: "latency", title: "Page reads inside shopper (GET /v1/recommendations)", format: fmt.ms,
      zero: true, series: () => [fieldSeries("p50", (s) => get(s, "pages", "p50_ms")),
                                 fieldSeries("p99", (s) => get(s, "pages", "p99_ms"))] },
    { id: "freshness", title: "List freshness (event accepted until its list is written)",
      format: fmt.ms, zero: true,
      series: () => [fieldSeries("p50", freshness("p50")), fieldSeries("p99", freshness("p99"))] },
    { id: "sources", title: "Served lists by source (all but personalized are fallbacks)",
      format: fmt.pct, zero: true, series: () => shareSeries((s) => get(s, "pages", "sources")) },
    { id: "tiers", title: "Lists written by tier", format: fmt.pct, zero: true,
      series: () => shareSeries((s) => get(s, "stats", "ranking", "lists_by_tier")) },
    { id: "trending", title: "Trending items", format: fmt.count, zero: true, integer: true,
      series: () => [fieldSeries("trending items", (s) => get(s, "stats", "ranking", "trending_items"))] },
    { id: "traffic", title: "Traffic", format: fmt.rate, zero: true,
      series: () => [rateSeries("events applied", (s) => get(s, "stats", "applied")),
                     rateSeries("page reads", (s) => get(s, "pages", "reads"))] },
  ];

  // Drawing.

  function el(name, attrs = {}, parent = null, text = null) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceStep(span) {
    const raw = span / 4, mag = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  }

  function runs(items, ok) { // consecutive items that pass `ok`
    const out = [];
    let run = [];
    for (const item of items) {
      if (ok(item)) run.push(item);
      else if (run.length) { out.push(run); run = []; }
    }
    if (run.length) out.push(run);
    return out;
  }

  function yRange(series, zero, integer) {
    const ys = [];
    for (const s of series) {
      s.points.forEach((p) => p[1] !== null && ys.push(p[1]));
      (s.band || []).forEach((b) => b[1] !== null && b[2] !== null && ys.push(b[1], b[2]));
    }
    if (!ys.length) return null;
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (zero) lo = Math.min(lo, 0);
    if (hi === lo) hi = lo + (Math.abs(lo) || 1);
    const step = integer ? Math.max(1, Math.round(niceStep(hi - lo))) : niceStep(hi - lo);
    return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
  }

  function drawAxes(svg, x, y, range, format) {
    for (let v = range.lo; v <= range.hi + range.step / 2; v += range.step) {
      el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }, svg);
      el("text", { class: "tick", x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, svg, format(v));
    }
    const t0 = samples[0].at, t1 = samples[samples.length - 1].at;
    for (let i = 0; i <= 3; i++) {
      const t = t0 + ((t1 - t0) * i) / 3;
      const label = new Date(t * 1000).toLocaleTimeString([], { hour12: false });
      const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
      el("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": anchor }, svg, label);
      if (t1 === t0) break;
    }
  }

  function drawSeries(svg, s, color, x, y) {
    let drawn = 0;
    for (const run of runs(s.band || [], (b) => b[1] !== null && b[2] !== null)) {
      const upper = run.map((b) => `${x(b[0]).toFixed(1)},${y(b[2]).toFixed(1)}`);
      const lower = run.reverse().map((b) => `${x(b[0]).toFixed(1)},${y(b[1]).toFixed(1)}`);
      el("path", { class: "band", fill: color, d: `M${upper.join("L")}L${lower.join("L")}Z` }, svg);
    }
    for (const run of runs(s.points, (p) => p[1] !== null)) {
      drawn += run.length;
      if (run.length === 1) {
        el("circle", { class: "point", fill: color, cx: x(run[0][0]), cy: y(run[0][1]), r: 3 }, svg);
      } else {
        const d = run.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("L");
        el("path", { class: "line", stroke: color, d: `M${d}` }, svg);
      }
    }
    return drawn;
  }

  function drawLegend(legend, series, format) {
    legend.replaceChildren();
    series.forEach((s, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLORS[i % COLORS.length];
      const last = [...s.points].reverse().find((p) => p[1] !== null);
      const latest = document.createElement("span");
      latest.className = "latest";
      latest.textContent = last ? format(last[1]) : "–";
      item.append(swatch, s.name, latest);
      legend.appendChild(item);
    });
  }

  function drawChart(chart) {
    const figure = document.getElementById(`chart-${chart.id}`);
    const svg = figure.querySelector("svg");
    svg.replaceChildren();
    const series = chart.series();
    const range = samples.length ? yRange(series, chart.zero, chart.integer) : null;
    let points = 0;
    if (range === null) {
      el("text", { class: "note", x: W / 2, y: H / 2, "text-anchor": "middle" }, svg,
        chart.id === "conversion" || chart.id === "revenue"
          ? "no experiment variant with sessions yet" : "no data yet");
    } else {
      const t0 = samples[0].at, t1 = samples[samples.length - 1].at;
      const x = (t) => M.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - M.left - M.right);
      const y = (v) => H - M.bottom - ((v - range.lo) / (range.hi - range.lo)) * (H - M.top - M.bottom);
      drawAxes(svg, x, y, range, chart.format);
      series.forEach((s, i) => { points += drawSeries(svg, s, COLORS[i % COLORS.length], x, y); });
    }
    figure.dataset.points = String(points);
    figure.dataset.series = String(series.length);
    drawLegend(figure.querySelector(".legend"), series, chart.format);
  }

  // Numbers now: tiles and the variant table.

  function latest(pick) {
    for (let i = samples.length - 1; i >= 0; i--) {
      const v = num(pick(samples[i]));
      if (v !== null) return v;
    }
    return null;
  }

  function fallbackShare() {
    const sources = get(samples[samples.length - 1], "pages", "sources") || {};
    const served = Object.entries(sources).filter(([k]) => k !== "error");
    const total = served.reduce((a, [, n]) => a + (num(n) || 0), 0);
    return total ? 1 - (num(sources.personalized) || 0) / total : null;
  }

  function drawTiles() {
    const tiles = [
      ["page_p50", "page read p50", latest((s) => get(s, "pages", "p50_ms")), fmt.ms],
      ["page_p99", "page read p99", latest((s) => get(s, "pages", "p99_ms")), fmt.ms],
      ["freshness_p99", "list freshness p99", latest(freshness("p99")), fmt.ms],
      ["fallback_share", "fallback share", samples.length ? fallbackShare() : null, fmt.pct],
      ["page_reads", "page reads", latest((s) => get(s, "pages", "reads")), fmt.count],
      ["events_applied", "events applied", latest((s) => get(s, "stats", "applied")), fmt.count],
      ["lists_written", "lists written", latest((s) => get(s, "stats", "lists_written")), fmt.count],
      ["trending", "trending items", latest((s) => get(s, "stats", "ranking", "trending_items")), fmt.count],
    ];
    const box = document.getElementById("tiles");
    box.replaceChildren(...tiles.map(([key, label, value, format]) => {
      const tile = document.createElement("div");
      tile.className = "tile";
      const l = document.createElement("span");
      l.className = "label";
      l.textContent = label;
      const v = document.createElement("span");
      v.className = "value";
      v.dataset.tile = key;
      v.textContent = show(value, format);
      tile.append(l, v);
      return tile;
    }));
  }

  const interval = (m, f) =>
    !m || num(m.value) === null ? "–"
      : `${f(m.value)} [${show(m.low, f)}, ${show(m.high, f)}]`;

  function versus(v) {
    const d = get(v, "vs_champion", "conversion_rate");
    if (!d || num(d.difference) === null) return ["–", false];
    const p = num(d.p_value) === null ? "" : ` p=${d.p_value.toFixed(3)}`;
    return [`${fmt.pct(d.difference)} [${show(d.low, fmt.pct)}, ${show(d.high, fmt.pct)}]${p}`, !!d.significant];
  }

  function drawVariants() {
    const body = document.querySelector("#variants tbody");
    const report = get(samples[samples.length - 1], "experiments") || {};
    const variants = Array.isArray(report.variants) ? report.variants.filter(Boolean) : [];
    if (!variants.length) {
      const row = body.ownerDocument.createElement("tr");
      const cell = document.createElement("td");
      cell.colSpan = 8;
      cell.className = "empty";
      cell.textContent = "No experiment variants reported yet.";
      row.appendChild(cell);
      body.replaceChildren(row);
      return;
    }
    body.replaceChildren(...variants.map((v) => {
      const [vs, significant] = versus(v);
      const cells = [v.name, v.role, v.model, show(v.weight, fmt.count), show(v.sessions, fmt.count),
        interval(v.conversion_rate, fmt.pct), interval(v.revenue_per_session, fmt.money), vs];
      const row = document.createElement("tr");
      cells.forEach((text, i) => {
        const cell = document.createElement("td");
        cell.textContent = text == null ? "–" : String(text);
        if (i === 7 && significant) cell.className = "significant";
        row.appendChild(cell);
      });
      return row;
    }));
  }

  function drawStatus(note) {
    const last = samples[samples.length - 1];
    const when = last ? new Date(last.at * 1000).toLocaleTimeString([], { hour12: false }) : "–";
    const champion = get(last, "experiments", "champion");
    document.getElementById("status").textContent =
      `${samples.length} samples, one every ${intervalS} s; last at ${when}` +
      (champion ? `; champion: ${champion}` : "") + (note ? ` (${note})` : "");
  }

  function drawAll(note) {
    CHARTS.forEach(drawChart);
    drawTiles();
    drawVariants();
    drawStatus(note);
    document.body.dataset.samples = String(samples.length);
  }

  // With a read key set (README, "Keys"), open /dashboard#key=READ_KEY: a URL's fragment
  // never reaches the server or its logs.
  const KEY = new URLSearchParams(location.hash.slice(1)).get("key");
  const HEADERS = KEY ? { Authorization: `Bearer ${KEY}` } : {};

  async function fetchSeries(since) {
    const url = since === undefined ? SERIES_URL : `${SERIES_URL}?since=${since}`;
    const response = await fetch(url, { cache: "no-store", headers: HEADERS });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function poll() {
    let note = "";
    try {
      const last = samples[samples.length - 1];
      const body = await fetchSeries(last ? last.at : undefined);
      intervalS = num(body.interval_s) || intervalS;
      samples = samples.concat(Array.isArray(body.samples) ? body.samples : []).slice(-MAX_SAMPLES);
    } catch (error) {
      note = `cannot reach shopper: ${error.message}; retrying`;
    }
    drawAll(note);
    document.body.dataset.ready = "true";
    setTimeout(poll, Math.max(500, intervalS * 1000));
  }

  function build() {
    const charts = document.getElementById("charts");
    for (const chart of CHARTS) {
      const figure = document.createElement("figure");
      figure.className = "chart";
      figure.id = `chart-${chart.id}`;
      const caption = document.createElement("figcaption");
      caption.textContent = chart.title;
      const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chart.title });
      const legend = document.createElement("div");
      legend.className = "legend";
      figure.append(caption, svg, legend);
      charts.appendChild(figure);
    }
  }

  build();
  poll();
})();
