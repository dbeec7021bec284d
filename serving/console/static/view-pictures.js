// Pictures: the corridor diagram, charts drawn from /audit/entries, and the timeline of
// crisis declarations. Each part uses only the APIs the caller may call: live GPUs and
// replicas need an operator key, the charts an auditor key.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { corridorDiagram, horizontalBars, stackedBars, timeline } from "./charts.js";
import { t } from "./i18n.js";
import { ledgerState } from "./view-ledger.js";

const MAX_ENTRIES = 5000;
const LIVE_STATES = new Set(["ALIVE", "RUNNING", "READY", "HEALTHY"]);

/** The newest entries (up to MAX_ENTRIES) matching params, oldest first. */
async function recentEntries(ctx, params = {}) {
  const tenant = scopeTenant(ctx);
  const head = await api.get("/audit/tree-head");
  let after = Math.max(-1, head.tree_size - MAX_ENTRIES - 1);
  const items = [];
  for (let page = 0; page < MAX_ENTRIES / 1000; page++) {
    const result = await api.get("/audit/entries", { ...params, tenant, after, limit: 1000 });
    items.push(...result.data);
    if (!result.has_more || !result.data.length) break;
    after = result.data[result.data.length - 1].index;
  }
  return items.map((i) => i.entry);
}

/** A scoped auditor of several tenants must name one: the ledger filter's, else the first. */
function scopeTenant(ctx) {
  const scope = ctx.me.audit_scope;
  if (!Array.isArray(scope)) return ledgerState.filters.tenant;
  return scope.includes(ledgerState.filters.tenant) ? ledgerState.filters.tenant : scope[0];
}

const date = (iso) => (iso ? new Date(iso) : null);

/** Declarations from GET /admin/crisis, as the timeline draws them. */
export function declarationsFromApi(records) {
  return records.map((r) => {
    const sides = new Set([r.declared_by.jurisdiction]);
    let activeFrom = null;
    const approvals = [...r.approvals].sort((a, b) => a.at.localeCompare(b.at)).map((a) => {
      sides.add(a.jurisdiction);
      if (!activeFrom && sides.has("FR") && sides.has("DE")) activeFrom = date(a.at);
      return { at: date(a.at), jurisdiction: a.jurisdiction };
    });
    const endKind = r.revoked_at ? "revoked" : r.status === "expired" ? "expired" : null;
    const endAt = r.revoked_at ? date(r.revoked_at) : endKind ? date(r.valid_until) : null;
    return {
      id: r.id, status: r.status, scope: r.scope, declaredAt: date(r.valid_from), approvals,
      activeFrom: activeFrom && (!endAt || activeFrom < endAt) ? activeFrom : null,
      endAt, endKind, validUntil: date(r.valid_until), label: lane(r.scope),
    };
  });
}

/** Declarations from the ledger's ``crisis`` entries (what an auditor can read). */
export function declarationsFromLedger(entries, now = new Date()) {
  const byId = new Map();
  for (const e of entries) {
    if (e.kind !== "crisis" || !e.declaration) continue;
    const d = e.detail || {};
    let x = byId.get(e.declaration);
    if (!x) {
      x = { id: e.declaration, approvals: [], declaredAt: date(e.timestamp), activeFrom: null, endAt: null, endKind: null };
      byId.set(e.declaration, x);
    }
    x.scope = d.scope || {};
    x.status = d.status;
    x.validUntil = date(d.valid_until);
    const at = date(e.timestamp);
    if (d.step === "declared") x.declaredAt = at;
    if (d.step === "approved") x.approvals.push({ at, jurisdiction: (d.operator || {}).jurisdiction || "?" });
    if (d.step === "activated") x.activeFrom = at;
    if (d.step === "revoked" || d.step === "expired") { x.endAt = at; x.endKind = d.step; }
  }
  return [...byId.values()].map((x) => {
    if (x.status === "active" && x.validUntil && x.validUntil <= now) x.status = "expired";
    return { ...x, label: lane(x.scope) };
  }).sort((a, b) => b.declaredAt - a.declaredAt);
}

function lane(scope) {
  return `${(scope.directions || []).join(", ")} · ${(scope.tenants || []).join(", ")}`;
}

function bucketSize(spanMs) {
  const sizes = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 900e3, 3600e3, 6 * 3600e3, 86400e3, 7 * 86400e3];
  return sizes.find((s) => spanMs / s <= 24) || sizes[sizes.length - 1];
}

/** Allowed routing entries counted per time bucket and per key(entry). */
export function overTime(entries, key) {
  const requests = entries.filter((e) => e.kind === "routing" && e.allowed === true && e.pool);
  if (!requests.length) return { buckets: [], series: [] };
  const times = requests.map((e) => Date.parse(e.timestamp));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const size = bucketSize(t1 - t0 + 1);
  const start = Math.floor(t0 / size) * size;
  const count = Math.floor((t1 - start) / size) + 1;
  const buckets = Array.from({ length: count }, (_, i) => {
    const at = new Date(start + i * size).toISOString();
    return { label: size < 86400e3 ? at.slice(11, size < 60e3 ? 19 : 16) : at.slice(5, 10), values: {} };
  });
  const series = new Set();
  requests.forEach((e, i) => {
    const b = buckets[Math.floor((times[i] - start) / size)];
    const k = key(e);
    series.add(k);
    b.values[k] = (b.values[k] || 0) + 1;
  });
  return { buckets, series: [...series].sort() };
}

function refusals(entries) {
  const counts = new Map();
  for (const e of entries) {
    if (e.allowed !== false) continue;
    for (const r of e.reasons || []) counts.set(r, (counts.get(r) || 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value, colour: "#b3261e" }));
}

/** Crossings: allowed routing/placement entries that name a declaration, by declaration and direction. */
export function crossings(entries) {
  const counts = new Map();
  for (const e of entries) {
    if (!e.declaration || e.allowed !== true || !["routing", "placement"].includes(e.kind)) continue;
    const direction = e.jurisdiction === "DE" ? "FR->DE" : "DE->FR";
    const k = `${e.declaration}|${direction}|${e.pool}`;
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  return [...counts].map(([k, count]) => {
    const [declaration, direction, pool] = k.split("|");
    return { declaration, direction, pool, count };
  });
}

export async function picturesView(root, ctx) {
  replace(root, h("h1", {}, t("pictures.title")), h("p", { role: "status", class: "loading" }, t("loading")));
  const now = new Date();
  const [corridor, pools, deployments, entries, crisisEntries, crisisRecords] = await Promise.all([
    ctx.corridor ? Promise.resolve(ctx.corridor) : null,
    ctx.caps.operator ? api.probe("/admin/pools") : null,
    ctx.caps.operator ? api.probe("/admin/deployments") : null,
    ctx.caps.audit ? recentEntries(ctx).catch(() => null) : null,
    ctx.caps.audit ? recentEntries(ctx, { kind: "crisis" }).catch(() => null) : null,
    ctx.caps.crisis ? api.probe("/admin/crisis") : null,
  ]);

  // live state per pool (operators)
  let live = null;
  if (pools) {
    live = {};
    for (const p of pools.pools) live[p.id] = { gpus_total: p.gpus_total, gpus_free: p.gpus_free, replicas: 0 };
    for (const d of (deployments && deployments.data) || []) {
      for (const r of d.replicas) {
        if (live[r.pool] && LIVE_STATES.has(String(r.state).toUpperCase())) live[r.pool].replicas += 1;
      }
    }
  }
  const declarations = crisisRecords ? declarationsFromApi(crisisRecords.data)
    : crisisEntries ? declarationsFromLedger(crisisEntries, now) : [];
  const crossed = entries ? crossings(entries) : [];

  // one arrow per active declaration and direction, to the pool that served most of its crossings
  const arrows = [];
  for (const d of declarations.filter((x) => x.status === "active")) {
    for (const direction of d.scope.directions || []) {
      const served = crossed.filter((c) => c.declaration === d.id && c.direction === direction).sort((a, b) => b.count - a.count);
      const replicaPool = deployments && deployments.data.flatMap((x) => x.replicas).find((r) => r.declaration === d.id);
      arrows.push({
        declaration: d.id, direction,
        pool: served.length ? served[0].pool : replicaPool ? replicaPool.pool : null,
        count: served.reduce((n, c) => n + c.count, 0),
      });
    }
  }

  const words = {
    FR: t("region.FR"), DE: t("region.DE"), gpus: t("diagram.gpus"), used: t("diagram.used"), free: t("diagram.free"),
    replicas: t("diagram.replicas"), noLive: t("diagram.noLive"), validUntil: t("diagram.validUntil"),
    expired: t("status.expired"), crossings: t("diagram.crossings"),
  };
  const parts = [h("h1", {}, t("pictures.title"))];
  if (corridor) {
    parts.push(h("section", { "aria-labelledby": "h-corridor", id: "corridor" },
      h("h2", { id: "h-corridor" }, t("pictures.corridor")),
      h("p", { class: "lead" }, t("pictures.corridorLead"), " ", h("code", { class: "hash" }, corridor.policy_digest.slice(0, 16) + "…")),
      corridorDiagram({ title: t("pictures.corridor"), pools: corridor.pools, live, arrows, words })));
  }
  if (entries) {
    const byPool = overTime(entries, (e) => e.pool);
    const byJurisdiction = overTime(entries, (e) => e.jurisdiction);
    const crossingRows = crossed.map((c) => ({ label: `${c.declaration} ${c.direction}`, value: c.count, colour: c.direction === "FR->DE" ? "#c8553d" : "#2f5f98" }))
      .sort((a, b) => b.value - a.value);
    parts.push(h("section", { "aria-labelledby": "h-charts", id: "charts" },
      h("h2", { id: "h-charts" }, t("pictures.charts")),
      h("p", { class: "lead" }, t("pictures.chartsLead", { count: entries.length })),
      h("div", { class: "chart-grid" },
        figure("chart-pool", t("chart.byPool"), stackedBars({ title: t("chart.byPool"), ...byPool, empty: t("chart.empty") })),
        figure("chart-jurisdiction", t("chart.byJurisdiction"), stackedBars({ title: t("chart.byJurisdiction"), ...byJurisdiction, empty: t("chart.empty") })),
        figure("chart-refusals", t("chart.refusals"), horizontalBars({ title: t("chart.refusals"), rows: refusals(entries), empty: t("chart.empty") })),
        figure("chart-crossings", t("chart.crossings"), horizontalBars({ title: t("chart.crossings"), rows: crossingRows, empty: t("chart.empty") })))));
  } else {
    parts.push(h("p", { class: "note", id: "charts-hidden" }, t("pictures.chartsNeedAuditor")));
  }
  if (crisisRecords || crisisEntries) {
    const statusWords = { declared: t("step.declared"), approved: t("step.approved"), pending: t("status.pending"), active: t("status.active"), revoked: t("status.revoked"), expired: t("status.expired"), now: t("chart.now") };
    parts.push(h("section", { "aria-labelledby": "h-timeline", id: "timeline" },
      h("h2", { id: "h-timeline" }, t("pictures.timeline")),
      timeline({ title: t("pictures.timeline"), declarations, now, words: statusWords, empty: t("chart.noDeclarations") })));
  }
  replace(root, ...parts);
}

function figure(id, caption, svg) {
  return h("figure", { id, class: "chart-figure" }, svg, h("figcaption", {}, caption));
}
