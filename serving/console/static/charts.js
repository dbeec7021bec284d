// Hand-drawn SVG pictures: the corridor diagram, stacked bars over time, horizontal bars,
// and the timeline of crisis declarations. Each returns an <svg role="img"> with a <title>.
// Colours come from attributes and classes (the CSP allows no inline style).

import { s } from "./dom.js";

export const PALETTE = ["#2f5f98", "#c8553d", "#3a8d6e", "#d19a1f", "#7c5ba6", "#4b9fb5", "#a14a76", "#6b7a3a"];

const JURISDICTION_COLOURS = { FR: "#2f5f98", DE: "#c8553d" };
// Pools take shades of their jurisdiction's colour: blues for fr-*, reds for de-*.
const POOL_SHADES = { fr: ["#2f5f98", "#7fa6d6", "#1b3a63", "#b3cbe9"], de: ["#c8553d", "#eba27c", "#8a3020", "#f3cbb3"] };
const shadeIndex = new Map();

export function colourFor(name, index) {
  if (JURISDICTION_COLOURS[name]) return JURISDICTION_COLOURS[name];
  const prefix = String(name).slice(0, 2);
  if (POOL_SHADES[prefix]) {
    if (!shadeIndex.has(name)) shadeIndex.set(name, [...shadeIndex.keys()].filter((k) => k.startsWith(prefix)).length);
    return POOL_SHADES[prefix][shadeIndex.get(name) % POOL_SHADES[prefix].length];
  }
  return PALETTE[index % PALETTE.length];
}

function frame(width, height, title, cls) {
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: `chart ${cls || ""}`,
    "aria-label": title, preserveAspectRatio: "xMinYMin meet",
  }, s("title", {}, title));
}

function text(x, y, content, attrs = {}) {
  return s("text", { x, y, ...attrs }, content);
}

/** Rough text width in px for the console's sans-serif (no font metrics without a canvas):
 *  capitals and digits are wider than lowercase letters. */
function textWidth(content, px = 12) {
  let em = 0;
  for (const ch of String(content)) em += /[A-Z0-9_]/.test(ch) ? 0.68 : /[il.,:'| ]/.test(ch) ? 0.3 : 0.56;
  return em * px;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= value);
}

/**
 * Stacked bars: buckets [{label, values: {series: count}}], series [name].
 * Used for requests per pool and per jurisdiction over time.
 */
export function stackedBars({ title, buckets, series, width = 600, height = 250, empty }) {
  const svg = frame(width, height, title, "stacked");
  const left = 44, right = 12, top = 30, bottom = 36;
  const plotW = width - left - right, plotH = height - top - bottom;
  const totals = buckets.map((b) => series.reduce((n, k) => n + (b.values[k] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  // legend
  let lx = left;
  series.forEach((name, i) => {
    svg.append(s("rect", { x: lx, y: 8, width: 10, height: 10, fill: colourFor(name, i) }),
      text(lx + 14, 17, name, { class: "legend" }));
    lx += 24 + textWidth(name);
  });
  // axis and grid
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH - f * plotH;
    svg.append(s("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }),
      text(left - 6, y + 4, String(Math.round(max * f * 10) / 10), { class: "axis", "text-anchor": "end" }));
  }
  if (!buckets.length || !totals.some(Boolean)) {
    svg.append(text(left + plotW / 2, top + plotH / 2, empty || "—", { class: "empty", "text-anchor": "middle" }));
    return svg;
  }
  const slot = plotW / buckets.length;
  const barW = Math.max(2, Math.min(40, slot * 0.7));
  const every = Math.ceil(buckets.length / 8);
  buckets.forEach((bucket, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let y = top + plotH;
    series.forEach((name, j) => {
      const count = bucket.values[name] || 0;
      if (!count) return;
      const hgt = (count / max) * plotH;
      y -= hgt;
      svg.append(s("rect", { x, y, width: barW, height: hgt, fill: colourFor(name, j), class: "bar" },
        s("title", {}, `${bucket.label} · ${name}: ${count}`)));
    });
    if (i % every === 0) {
      svg.append(text(x + barW / 2, top + plotH + 16, bucket.label, { class: "axis", "text-anchor": "middle" }));
    }
  });
  return svg;
}

/** Horizontal bars: rows [{label, value, colour?}] (refusals by reason, crossings per declaration). */
export function horizontalBars({ title, rows, width = 600, empty }) {
  const rowH = 24, top = 10;
  const labelW = Math.min(340, Math.max(80, ...rows.map((r) => textWidth(r.label) + 14)));
  const height = top * 2 + Math.max(1, rows.length) * rowH;
  const svg = frame(width, height, title, "hbars");
  if (!rows.length) {
    svg.append(text(width / 2, height / 2 + 4, empty || "—", { class: "empty", "text-anchor": "middle" }));
    return svg;
  }
  const max = Math.max(...rows.map((r) => r.value));
  const plotW = width - labelW - 50;
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const w = Math.max(2, (row.value / max) * plotW);
    svg.append(
      text(labelW - 8, y + 16, row.label, { class: "label", "text-anchor": "end" }),
      s("rect", { x: labelW, y: y + 4, width: w, height: rowH - 8, fill: row.colour || PALETTE[i % PALETTE.length], class: "bar" },
        s("title", {}, `${row.label}: ${row.value}`)),
      text(labelW + w + 6, y + 16, String(row.value), { class: "value" }),
    );
  });
  return svg;
}

/**
 * The crisis declarations as lanes on a time axis. declarations: [{id, label, declaredAt,
 * approvals: [{at, jurisdiction}], activeFrom, endAt, endKind ("revoked"|"expired"|null),
 * validUntil, status}], times as Date. words: {declared, approved, active, revoked, expired, pending, now}.
 */
export function timeline({ title, declarations, now = new Date(), words, width = 1200, empty }) {
  const laneH = 44, top = 34, left = 250, right = 20;
  const height = top + Math.max(1, declarations.length) * laneH + 30;
  const svg = frame(width, height, title, "timeline");
  if (!declarations.length) {
    svg.append(text(width / 2, height / 2, empty || "—", { class: "empty", "text-anchor": "middle" }));
    return svg;
  }
  const times = declarations.flatMap((d) => [d.declaredAt, d.activeFrom, d.endAt, ...d.approvals.map((a) => a.at)]).filter(Boolean);
  let t0 = Math.min(...times.map(Number));
  let t1 = Math.max(Number(now), ...times.map(Number));
  if (t1 - t0 < 60_000) { t1 = t0 + 60_000; }
  const pad = (t1 - t0) * 0.04;
  t0 -= pad; t1 += pad;
  const plotW = width - left - right;
  const x = (t) => left + ((Number(t) - t0) / (t1 - t0)) * plotW;
  // legend and axis
  const legend = [["pending", "#d19a1f"], ["active", "#3a8d6e"], ["revoked", "#b3261e"], ["expired", "#8a8f98"]];
  let lx = left;
  for (const [key, colour] of legend) {
    svg.append(s("rect", { x: lx, y: 8, width: 14, height: 8, fill: colour }), text(lx + 18, 16, words[key], { class: "legend" }));
    lx += 36 + textWidth(words[key]);
  }
  const axisY = top + declarations.length * laneH + 6;
  svg.append(s("line", { x1: left, x2: width - right, y1: axisY, y2: axisY, class: "axis-line" }));
  const short = t1 - t0 < 3600e3;
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const iso = new Date(t0 + f * (t1 - t0)).toISOString();
    const label = short ? iso.slice(11, 19) : iso.slice(5, 16).replace("T", " ");
    const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
    svg.append(text(left + f * plotW, axisY + 16, label, { class: "axis", "text-anchor": anchor }));
  }
  svg.append(s("line", { x1: x(now), x2: x(now), y1: top - 6, y2: axisY, class: "now" }),
    text(x(now), top - 8, words.now, { class: "axis", "text-anchor": "middle" }));

  declarations.forEach((d, i) => {
    const y = top + i * laneH + laneH / 2;
    const group = s("g", { class: `lane status-${d.status}`, "data-declaration": d.id },
      s("title", {}, `${d.id}: ${d.status}`));
    group.append(text(left - 10, y - 3, d.id, { class: "lane-id", "text-anchor": "end" }),
      text(left - 10, y + 12, d.label, { class: "lane-label", "text-anchor": "end" }));
    const pendingEnd = d.activeFrom || d.endAt || now;
    group.append(s("line", { x1: x(d.declaredAt), x2: x(pendingEnd), y1: y, y2: y, class: "pending" }));
    if (d.activeFrom) {
      const end = d.endAt || now;
      group.append(s("rect", { x: x(d.activeFrom), y: y - 7, width: Math.max(3, x(end) - x(d.activeFrom)), height: 14, class: "active" }));
      if (!d.endAt && d.validUntil) {
        group.append(s("line", { x1: x(now), x2: x(Math.min(Number(d.validUntil), t1)), y1: y, y2: y, class: "window" }));
      }
    }
    group.append(s("circle", { cx: x(d.declaredAt), cy: y, r: 5, class: "declared" }, s("title", {}, `${words.declared} ${d.declaredAt.toISOString()}`)));
    for (const a of d.approvals) {
      const ax = x(a.at);
      group.append(s("path", { d: `M${ax},${y - 7} l6,7 l-6,7 l-6,-7 z`, class: "approved" }, s("title", {}, `${words.approved} ${a.jurisdiction} ${a.at.toISOString()}`)),
        text(ax, y - 10, a.jurisdiction, { class: "mark", "text-anchor": "middle" }));
    }
    if (d.endAt && d.endKind) {
      const ex = x(d.endAt);
      group.append(s("path", { d: `M${ex - 5},${y - 5} l10,10 m0,-10 l-10,10`, class: `end ${d.endKind}` },
        s("title", {}, `${words[d.endKind]} ${d.endAt.toISOString()}`)));
    }
    svg.append(group);
  });
  return svg;
}

/**
 * The corridor: FR pools on the left, DE pools on the right, each with its accreditations,
 * GPUs used/free and live replicas (when the caller may see them), and an arrow per
 * active declaration and direction towards the pool that served its crossings.
 * pools: [{id, jurisdiction, site, operator, gpu, accreditations}],
 * live: {poolId: {gpus_total, gpus_free, replicas}} or null,
 * arrows: [{declaration, direction, pool, count}], words: {...labels}.
 */
export function corridorDiagram({ title, pools, live, arrows, words, width = 1200 }) {
  const sides = { FR: pools.filter((p) => p.jurisdiction === "FR"), DE: pools.filter((p) => p.jurisdiction === "DE") };
  const boxH = 132, gap = 14, top = 46, colW = 430;
  const rows = Math.max(1, sides.FR.length, sides.DE.length);
  const height = top + rows * (boxH + gap) + 10;
  const svg = frame(width, height, title, "corridor");
  svg.append(s("defs", {},
    s("marker", { id: "arrowhead", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  const columns = { FR: 16, DE: width - 16 - colW };
  const boxes = {};
  for (const [side, x0] of Object.entries(columns)) {
    svg.append(s("rect", { x: x0 - 8, y: 6, width: colW + 16, height: height - 12, rx: 10, class: `region region-${side}` }),
      text(x0 + 4, 30, words[side], { class: "region-title" }));
    sides[side].forEach((pool, i) => {
      const y = top + i * (boxH + gap);
      boxes[pool.id] = { x: x0, y, side };
      const g = s("g", { class: "pool", "data-pool": pool.id },
        s("title", {}, `${pool.id} (${pool.jurisdiction})`),
        s("rect", { x: x0, y, width: colW, height: boxH, rx: 6, class: "pool-box" }),
        text(x0 + 12, y + 22, pool.id, { class: "pool-id" }),
        text(x0 + 12, y + 40, `${pool.site} · ${pool.operator}`, { class: "pool-meta" }));
      const state = live && live[pool.id];
      const gpuLine = state
        ? `${words.gpus}: ${fmt(state.gpus_total - state.gpus_free)} ${words.used} / ${fmt(state.gpus_free)} ${words.free} (${pool.gpu.count} × ${pool.gpu.type})`
        : `${words.gpus}: ${pool.gpu.count} × ${pool.gpu.type}`;
      g.append(text(x0 + 12, y + 60, gpuLine, { class: "pool-gpus" }));
      if (state) {
        const barW = colW - 24;
        const used = state.gpus_total ? (state.gpus_total - state.gpus_free) / state.gpus_total : 0;
        g.append(s("rect", { x: x0 + 12, y: y + 66, width: barW, height: 8, rx: 3, class: "gpu-free" }),
          s("rect", { x: x0 + 12, y: y + 66, width: Math.max(0, barW * used), height: 8, rx: 3, class: "gpu-used" }),
          text(x0 + 12, y + 92, `${words.replicas}: ${state.replicas}`, { class: "pool-replicas", "data-replicas": state.replicas }));
      } else {
        g.append(text(x0 + 12, y + 92, words.noLive, { class: "pool-replicas muted" }));
      }
      let cx = x0 + 12;
      for (const acc of pool.accreditations) {
        const label = acc.id;
        const w = textWidth(label, 11) * 1.08 + 16;
        g.append(s("g", { class: `chip ${acc.expired ? "expired" : ""}`, "data-accreditation": acc.id },
          s("title", {}, `${acc.id} · ${acc.issuer || ""} · ${words.validUntil} ${acc.valid_until}${acc.expired ? " · " + words.expired : ""}`),
          s("rect", { x: cx, y: y + 104, width: w, height: 18, rx: 9 }),
          text(cx + 7, y + 117, label)));
        cx += w + 6;
      }
      svg.append(g);
    });
  }
  // arrows through the middle, one per active declaration and direction
  const midL = columns.FR + colW + 8, midR = columns.DE - 8;
  arrows.forEach((arrow, i) => {
    const [from, to] = arrow.direction.split("->");
    const target = boxes[arrow.pool];
    const y = target ? target.y + boxH / 2 + (i % 3) * 10 - 10 : top + 40 + i * 30;
    const y0 = top + 30 + i * 24;
    const fromX = from === "FR" ? midL : midR;
    const toX = to === "DE" ? (target ? target.x : midR) : (target ? target.x + colW : midL);
    const c = (fromX + toX) / 2;
    const count = `${arrow.direction} · ${arrow.count || 0} ${words.crossings}`;
    const labelY = Math.min(y0, y) - 8;
    svg.append(s("g", { class: "crossing", "data-declaration": arrow.declaration, "data-direction": arrow.direction },
      s("title", {}, `${arrow.declaration} · ${count}`),
      s("path", { d: `M${fromX},${y0} C${c},${y0} ${c},${y} ${toX},${y}`, class: "crossing-line", "marker-end": "url(#arrowhead)" }),
      text(c, labelY - 14, arrow.declaration, { class: "crossing-label", "text-anchor": "middle" }),
      text(c, labelY, count, { class: "crossing-label", "text-anchor": "middle" })));
  });
  return svg;
}

function fmt(n) { return Number.isInteger(n) ? String(n) : n.toFixed(1); }
