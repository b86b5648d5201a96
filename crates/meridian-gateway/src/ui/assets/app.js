// Meridian's live dashboard: one snapshot a second over server-sent events
// (read with fetch, so the admin key can go in a header), rendered into the
// page's views. No other host is ever contacted.
"use strict";

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("meridian-admin-key") || "";
let tail = [];              // newest last, at most 500
let since = 0;
let last = null;            // the latest snapshot
let shownDrillReport = null;

function headers() {
  return key ? { authorization: "Bearer " + key } : {};
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const pct = (x) => (x * 100).toFixed(0) + "%";
const ms = (x) => (x === null || x === undefined ? "–" : x >= 1000 ? (x / 1000).toFixed(1) + " s" : x.toFixed(0) + " ms");
const when = (unix) => new Date(unix * 1000).toLocaleTimeString();

// ---- views -----------------------------------------------------------------

function showView(name) {
  for (const t of document.querySelectorAll(".tab")) {
    const on = t.dataset.view === name;
    t.setAttribute("aria-selected", on ? "true" : "false");
    t.tabIndex = on ? 0 : -1; // arrow keys move between tabs
    $(t.dataset.view).hidden = !on;
  }
  location.hash = name;
}

for (const t of document.querySelectorAll(".tab")) {
  t.addEventListener("click", () => showView(t.dataset.view));
  t.addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll(".tab")];
    const i = tabs.indexOf(t);
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      next.focus();
      showView(next.dataset.view);
    }
  });
}

function spark(values) {
  const max = Math.max(1, ...values);
  const w = 60, h = 14;
  const pts = values.map((v, i) => `${(i * w / (values.length - 1 || 1)).toFixed(1)},${(h - v / max * h).toFixed(1)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0550ae");
  svg.append(line);
  return svg;
}

// Country outlines as one SVG path in the map's coordinates (x = longitude
// + 180, y = 90 - latitude), from the TopoJSON the gateway serves: arcs are
// delta-encoded integer points under the topology's transform; a ring joins
// arcs (~i: arc i reversed), each after the first without its first point.
function topoPath(topo) {
  const [sx, sy] = topo.transform.scale, [tx, ty] = topo.transform.translate;
  const arcs = topo.arcs.map((arc) => {
    let x = 0, y = 0;
    return arc.map(([dx, dy]) => { x += dx; y += dy; return [x * sx + tx + 180, 90 - (y * sy + ty)]; });
  });
  const ring = (ids) => {
    const pts = [];
    for (const id of ids) {
      const a = id < 0 ? [...arcs[~id]].reverse() : arcs[id];
      pts.push(...(pts.length ? a.slice(1) : a));
    }
    // A ring that crosses the antimeridian (Russia, Fiji) jumps from one
    // edge to the other: it is drawn as pieces, not across the map.
    let out = "", prev = null, whole = true;
    for (const [x, y] of pts) {
      const jump = prev !== null && Math.abs(x - prev) > 180;
      if (jump) whole = false;
      out += (prev === null || jump ? "M" : "L") + `${x.toFixed(2)},${y.toFixed(2)}`;
      prev = x;
    }
    return whole ? out + "Z" : out;
  };
  let d = "";
  for (const g of topo.objects.countries.geometries) {
    const polygons = g.type === "Polygon" ? [g.arcs] : g.type === "MultiPolygon" ? g.arcs : [];
    for (const rings of polygons) for (const r of rings) d += ring(r);
  }
  return d;
}

let countries = null; // the path, once loaded
fetch("/ui/countries-110m.json").then((r) => r.json()).then((t) => {
  countries = topoPath(t);
  if (last) renderMap(lastRegions);
}).catch(() => {});
let lastRegions = [];
let landPath = null;

function renderMap(regions) {
  lastRegions = regions;
  const svg = $("map");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  // Equirectangular: x = longitude + 180, y = 90 - latitude, framed on the
  // regions shown (at least 60° by 30°), with a 15° graticule.
  const xs = regions.map((r) => r.lon + 180), ys = regions.map((r) => 90 - r.lat);
  let x0 = Math.min(...xs) - 10, x1 = Math.max(...xs) + 25, y0 = Math.min(...ys) - 8, y1 = Math.max(...ys) + 8;
  if (!regions.length) { x0 = 0; x1 = 360; y0 = 0; y1 = 180; }
  if (x1 - x0 < 60) { const c = (x0 + x1) / 2; x0 = c - 30; x1 = c + 30; }
  if (y1 - y0 < 30) { const c = (y0 + y1) / 2; y0 = c - 15; y1 = c + 15; }
  svg.setAttribute("viewBox", `${x0} ${y0} ${x1 - x0} ${y1 - y0}`);
  const unit = (x1 - x0) / 300;
  for (let x = 0; x <= 360; x += 15) add("line", { x1: x, y1: 0, x2: x, y2: 180, class: "grid-line", "stroke-width": unit * .4 });
  for (let y = 0; y <= 180; y += 15) add("line", { x1: 0, y1: y, x2: 360, y2: y, class: "grid-line", "stroke-width": unit * .4 });
  if (countries) {
    // One element, kept: its path is parsed once, not at every render.
    if (!landPath) {
      landPath = document.createElementNS(ns, "path");
      landPath.setAttribute("d", countries);
      landPath.setAttribute("class", "land");
    }
    landPath.setAttribute("stroke-width", unit * .3);
    svg.append(landPath);
  }
  const size = unit * 7;
  // Dots first: a label never covers one.
  const placed = regions.map((r) => ({ x: r.lon + 180 - unit * 2.5, y: 90 - r.lat - unit * 2.5, w: unit * 5, h: unit * 5 }));
  const labels = [];
  for (const r of regions) {
    const x = r.lon + 180, y = 90 - r.lat;
    const open = r.any_breaker_open;
    const active = r.models.some((m) => m.rps > 0);
    const c = add("circle", { cx: x, cy: y, r: unit * (active ? 4 : 2.5), fill: open ? "#a40e26" : active ? "#116329" : "#8c959f", "stroke-width": unit * .6 });
    const t = document.createElementNS(ns, "title");
    t.textContent = `${r.region}: ${open ? "breaker open" : active ? "serving" : "idle"}`;
    c.append(t);
    // The box a label takes as fonts draw it: about .62 em a character
    // and 1.2 em from ascent to descent (a margin on both).
    const at = placeLabel(placed, x, y, r.region.length * size * .64, size * 1.2, unit);
    // A label moved away from its dot gets a leader line to it.
    if (at.far) {
      const lx = at.x > x ? at.x : at.x + at.w;
      add("line", { x1: x, y1: y, x2: lx, y2: at.y + at.h / 2, class: "leader", "stroke-width": unit * .4 });
    }
    add("text", { x: at.x, y: at.y + size * .95, "font-size": size, "data-region": r.region }, r.region);
    labels.push(at);
  }
  // Labels pushed past the frame widen it.
  for (const b of labels) {
    x0 = Math.min(x0, b.x - unit); x1 = Math.max(x1, b.x + b.w + unit);
    y0 = Math.min(y0, b.y - unit); y1 = Math.max(y1, b.y + b.h + unit);
  }
  svg.setAttribute("viewBox", `${x0} ${y0} ${x1 - x0} ${y1 - y0}`);
}

// Where a label of w × h goes beside the dot at (x, y) without touching a
// label already placed (boxes pushed to `placed`): right, left, above and
// below first, then stepping further down and up until a place is free
// (`far`: not beside the dot).
// Busy regions are placed first, so theirs sit next to their dots.
function placeLabel(placed, x, y, w, h, unit) {
  const pad = unit * .8, gap = unit * 4;
  const free = (b) => placed.every((o) => b.x + b.w + pad <= o.x || o.x + o.w + pad <= b.x || b.y + b.h + pad <= o.y || o.y + o.h + pad <= b.y);
  const near = [[x + gap, y - h / 2], [x - gap - w, y - h / 2], [x - w / 2, y - gap - h], [x - w / 2, y + gap]];
  for (let step = 1; step < 200; step++) {
    const dy = Math.ceil(step / 2) * (h + pad) * (step % 2 ? 1 : -1);
    near.push([x + gap, y - h / 2 + dy], [x - gap - w, y - h / 2 + dy]);
  }
  for (const [i, [bx, by]] of near.entries()) {
    const b = { x: bx, y: by, w, h, far: i >= 4 };
    if (free(b)) { placed.push(b); return b; }
  }
  const b = { x: x + gap, y: Math.max(...placed.map((o) => o.y + o.h)) + pad, w, h, far: true };
  placed.push(b);
  return b;
}

// What each surface is called on the page.
const SURFACES = { "runtime": "Converse/Invoke", "runtime-messages": "Messages", "mantle-messages": "Mantle Messages", "runtime-openai": "OpenAI", "mantle-openai": "Mantle OpenAI", "provider": "Provider" };

const FIGURES = [
  ["share", "Share", (m) => pct(m.share)], ["rps", "Req/s", (m) => m.rps.toFixed(1)],
  ["p50", "p50", (m) => ms(m.p50_ms)], ["p99", "p99", (m) => ms(m.p99_ms)], ["ttft", "TTFT p50", (m) => ms(m.ttft_p50_ms)],
  ["errors", "Errors", (m) => pct(m.error_rate)], ["throttles", "Throttles", (m) => pct(m.throttle_rate)],
  ["breaker", "Breaker", (m) => m.breaker], ["quota", "Tokens/min used / learned", (m) => `${m.tokens_last_min} / ${m.quota_tokens_per_min ?? "–"}`],
  ["total", "Total", (m) => String(m.total)],
];

function renderRegions(s) {
  $("window").textContent = s.window_s;
  // The busiest regions first (requests per second now, then in total);
  // regions without traffic and without an open breaker fold into one line.
  const rps = (r) => r.models.reduce((n, m) => n + m.rps, 0);
  const total = (r) => r.models.reduce((n, m) => n + m.total, 0);
  const regions = [...s.regions].sort((a, b) => rps(b) - rps(a) || total(b) - total(a) || b.any_breaker_open - a.any_breaker_open || a.region.localeCompare(b.region));
  renderMap(regions);
  const cards = $("region-cards");
  cards.replaceChildren();
  const byRegion = {};
  for (const r of s.reroutes) byRegion[r.from] = r;
  const idle = regions.filter((r) => !r.models.length && !r.any_breaker_open && !byRegion[r.region]);
  const idleLine = $("idle-regions");
  idleLine.hidden = idle.length === 0;
  idleLine.textContent = idle.length ? `No traffic yet in ${idle.length} region${idle.length > 1 ? "s" : ""}: ${idle.map((r) => r.region).join(", ")}` : "";
  for (const r of regions.filter((r) => !idle.includes(r))) {
    const open = r.any_breaker_open;
    const card = el("article", { class: "card" + (open ? " open" : ""), "data-region": r.region, "aria-label": r.region });
    card.append(el("h3", {}, el("span", { text: r.region }), el("span", { class: "muted", text: r.name })));
    for (const m of r.models) {
      const block = el("section", { class: "model", "data-model": m.model, "aria-label": `${m.model} in ${r.region}` });
      const surfaces = (m.surfaces || []).map((x) => SURFACES[x] || x).join(", ");
      const head = el("h4", {}, el("span", { text: m.model }),
        el("span", { class: "muted surface", "data-field": "surface", title: "the surface that answered", text: surfaces || "–" }));
      head.append(spark(m.served_per_s));
      block.append(head);
      const dl = el("dl", { class: "figures" });
      for (const [field, label, f] of FIGURES) {
        dl.append(el("div", {}, el("dt", { text: label }),
          el("dd", { "data-field": field, class: field === "breaker" ? "breaker-" + m.breaker : "", text: f(m) })));
      }
      block.append(dl);
      card.append(block);
    }
    if (!r.models.length) card.append(el("p", { class: "muted", text: "no traffic yet" }));
    const rr = byRegion[r.region];
    if (rr) card.append(el("p", { class: "muted", text: `Last reroute: ${rr.model} → ${rr.to} at ${when(rr.at)} (${rr.reason})` }));
    cards.append(card);
  }
  const tb = $("reroutes").tBodies[0];
  tb.replaceChildren();
  for (const r of [...s.reroutes].reverse()) {
    tb.append(el("tr", {}, ...[when(r.at), r.model, r.from, r.to, r.reason].map((t) => el("td", { text: t }))));
  }
}

function renderResidency(s) {
  const v = s.residency.violations;
  const banner = $("violations");
  banner.hidden = v.length === 0;
  banner.textContent = v.length ? "Residency violation: " + v.map((x) => `policy ${x.policy}${x.tenant ? " (tenant " + x.tenant + ")" : ""} processed in ${x.region} ×${x.count}`).join("; ") : "";
  const tb = $("residency-table").tBodies[0];
  tb.replaceChildren();
  for (const p of s.residency.policies) {
    const processed = el("td", { "data-field": "processed" });
    for (const r of p.processed) {
      processed.append(el("span", { class: r.allowed === false ? "no" : "yes", "data-region": r.region, text: `${r.region} ×${r.count}` }), " ");
    }
    tb.append(el("tr", { "data-policy": p.policy, "data-tenant": p.tenant },
      el("td", { text: p.policy }), el("td", { text: p.tenant || "—" }), processed,
      el("td", { "data-field": "allowed", class: "muted", text: p.allowed.join(", ") })));
  }
}

function matches(e) {
  const f = (id) => $(id).value.trim().toLowerCase();
  const has = (v, q) => !q || String(v || "").toLowerCase().includes(q);
  return has(e.model, f("f-model")) && has(e.tenant, f("f-tenant")) && has(e.region + " " + e.route, f("f-region")) && has(e.outcome, f("f-outcome"));
}

function renderTail() {
  const tb = $("tail").tBodies[0];
  tb.replaceChildren();
  const rows = tail.filter(matches).slice(-100).reverse();
  for (const e of rows) {
    const marks = [e.cache ? "cache:" + e.cache : "", e.guard ? "guard:" + e.guard : ""].filter(Boolean).join(" ");
    const open = el("button", { type: "button", class: "open-record", "data-id": e.request_id, "aria-label": "Open the record of " + e.request_id, text: "Open" });
    open.addEventListener("click", () => openRecord(e.request_id));
    const opencell = el("td"); opencell.append(open);
    tb.append(el("tr", { "data-id": e.request_id },
      el("td", { text: new Date(e.at_ms).toLocaleTimeString() }), el("td", { text: e.model }), el("td", { text: e.tenant || "—" }),
      el("td", { text: e.route }), el("td", { text: e.region }), el("td", { text: `${e.status} ${e.outcome}` }),
      el("td", { class: "num", text: String(e.latency_ms) }), el("td", { class: "num", text: `${e.input_tokens}/${e.output_tokens}` }),
      el("td", { class: "num", text: e.cost_usd === null ? "–" : "$" + e.cost_usd.toFixed(6) }), el("td", { text: marks }), opencell));
  }
  const models = new Set(tail.map((e) => e.model));
  $("models-list").replaceChildren(...[...models].map((m) => el("option", { value: m })));
}

for (const id of ["f-model", "f-tenant", "f-region", "f-outcome"]) $(id).addEventListener("input", renderTail);

async function openRecord(id) {
  const r = await fetch("/ui/api/requests/" + encodeURIComponent(id), { headers: headers() });
  const body = await r.json();
  $("record-json").textContent = JSON.stringify(body, null, 2);
  $("record").showModal();
}

function renderTenants(s) {
  const tb = $("tenant-table").tBodies[0];
  tb.replaceChildren();
  const list = s.tenants ? s.tenants.tenants : [];
  $("no-tenants").hidden = list.length > 0;
  for (const t of list) {
    const l = t.limits;
    const money = (x) => (x === null || x === undefined ? "–" : "$" + Number(x).toFixed(4));
    const limits = [l.requests_per_minute && `${l.requests_per_minute} req/min`, l.tokens_per_minute && `${l.tokens_per_minute} tokens/min`, l.max_concurrent && `${l.max_concurrent} at once`].filter(Boolean).join(", ") || "none";
    tb.append(el("tr", { "data-tenant": t.name }, el("td", { text: t.name }),
      el("td", { class: "num", text: String(t.day.requests) }), el("td", { class: "num", text: String(t.day.input_tokens + t.day.output_tokens) }),
      el("td", { class: "num", text: money(t.day.cost_usd) }), el("td", { class: "num", text: money(l.budget_usd_per_day) }),
      el("td", { class: "num", text: money(t.month.cost_usd) }), el("td", { class: "num", text: money(l.budget_usd_per_month) }),
      el("td", { text: limits })));
  }
}

function renderDrills(s) {
  const sel = $("scenario");
  if (!sel.options.length) sel.append(...s.scenarios.map((n) => el("option", { value: n, text: n })));
  $("start-drill").disabled = !s.drills_allowed || s.drills.some((d) => d.status === "running");
  if (!s.drills_allowed) $("drill-message").textContent = "Drills start from here when the fleet is simulated or an admin key is set.";
  const list = $("drill-list");
  list.replaceChildren();
  for (const d of [...s.drills].reverse()) {
    const card = el("article", { class: "card", "data-drill": d.id, "data-status": d.status },
      el("h3", {}, el("span", { text: `#${d.id} ${d.scenario} (${d.duration_s} s)` }), el("span", { class: d.status === "passed" ? "yes" : d.status === "running" ? "muted" : "no", text: d.status })),
      // Focusable: a keyboard can scroll its long lines.
      el("pre", { tabindex: "0", "aria-label": `drill #${d.id} output`, text: d.lines.slice(-15).join("\n") }));
    if (d.report) {
      const b = el("button", { type: "button", class: "show-report", "data-drill": d.id, text: "Show report" });
      b.addEventListener("click", () => showReport(d.id));
      card.append(b);
    }
    list.append(card);
  }
}

async function showReport(id) {
  const r = await fetch(`/ui/api/drills/${id}/report`, { headers: headers() });
  const f = $("report");
  f.srcdoc = await r.text();
  f.hidden = false;
  shownDrillReport = id;
  f.dataset.drill = id;
}

$("drill-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = JSON.stringify({ scenario: $("scenario").value, duration_s: Number($("duration").value) });
  const r = await fetch("/ui/api/drills", { method: "POST", headers: { ...headers(), "content-type": "application/json" }, body });
  const out = await r.json();
  $("drill-message").textContent = r.ok ? `Drill #${out.id} started.` : out.message;
});

// A view is rebuilt only when what it shows changed, so a button is not
// replaced under the pointer (or a keyboard focus) every second.
const shown = {};
function changed(name, v) {
  const text = JSON.stringify(v);
  if (shown[name] === text) return false;
  shown[name] = text;
  return true;
}

function render(s) {
  last = s;
  $("where").textContent = `gateway in ${s.gateway_region} · upstream ${s.upstream.mode} (${s.upstream.detail}) · updated ${when(s.now)}`;
  $("simulated").hidden = !s.simulated;
  for (const e of s.tail) tail.push(e);
  if (tail.length > 500) tail = tail.slice(-500);
  since = s.tail_seq;
  if (changed("regions", [s.regions, s.reroutes])) renderRegions(s);
  if (changed("residency", s.residency)) renderResidency(s);
  if (s.tail.length) renderTail();
  if (changed("tenants", s.tenants)) renderTenants(s);
  if (changed("drills", [s.drills, s.drills_allowed])) renderDrills(s);
  document.body.dataset.updated = String(s.now);
}

// ---- the live stream ---------------------------------------------------------

async function connect() {
  try {
    const a = await (await fetch("/ui/api/auth", { headers: headers() })).json();
    if (!a.authorized) {
      $("login").hidden = false;
      $("login-error").textContent = key ? "That key was refused." : "";
      $("where").textContent = "the dashboard needs the admin key";
      $("key").focus();
      return;
    }
    const r = await fetch("/ui/api/stream?since=" + since, { headers: headers() });
    $("login").hidden = true;
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (err) {
    $("where").textContent = "disconnected; retrying…";
  }
  setTimeout(connect, 2000);
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key").value;
  sessionStorage.setItem("meridian-admin-key", key);
  connect();
});

showView((location.hash || "#regions").slice(1) in { regions: 1, residency: 1, decisions: 1, tenants: 1, drills: 1 } ? location.hash.slice(1) || "regions" : "regions");
connect();
