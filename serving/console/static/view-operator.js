// The operator's view: pools, quarantined nodes, deployments and replicas, crisis
// declarations (declare, approve, revoke: the API enforces the two-person rule, the page
// shows who backs a declaration and who is awaited), and the security event feed.

import * as api from "./api.js";
import { h, replace, shortTime } from "./dom.js";
import { t } from "./i18n.js";

const SEVERITY_CLASSES = { 0: "sev-info", 1: "sev-info", 2: "sev-low", 3: "sev-medium", 4: "sev-high", 5: "sev-critical", 6: "sev-critical" };
const REFRESH_MS = 10_000;

function table(id, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", id }, empty);
  return h("table", { id },
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows));
}

function list(values) { return (values || []).join(", ") || "—"; }

function poolsSection(pools) {
  const rows = pools.pools.map((p) => h("tr", { "data-pool": p.id },
    h("th", { scope: "row" }, p.id),
    h("td", {}, h("span", { class: `badge j-${p.jurisdiction}` }, p.jurisdiction)),
    h("td", {}, p.site), h("td", {}, p.operator),
    h("td", { class: "num" }, String(p.nodes.length)),
    h("td", { class: "num" }, `${p.gpus_free} / ${p.gpus_total}`),
    h("td", {}, p.dead_nodes.length ? p.dead_nodes.map((n) => h("code", {}, n)) : "—"),
    h("td", {}, p.quarantined_nodes.length ? p.quarantined_nodes.map((n) => h("code", { class: "bad" }, n)) : "—")));
  const quarantined = pools.quarantined.map((q) => h("tr", { "data-node": q.node_id },
    h("td", {}, h("code", {}, q.node_id)), h("td", {}, h("code", { class: "reason" }, q.code)),
    h("td", {}, q.pool || "—"), h("td", {}, q.message),
    h("td", {}, Object.entries(q.labels || {}).map(([k, v]) => h("code", { class: "label" }, `${k}=${v}`)))));
  return h("section", { "aria-labelledby": "h-pools", id: "pools" },
    h("h2", { id: "h-pools" }, t("operator.pools")),
    table("pools-table", [t("field.pool"), t("field.jurisdiction"), t("field.site"), t("field.operator"), t("field.nodes"), t("field.gpusFree"), t("field.deadNodes"), t("field.quarantinedNodes")], rows, t("operator.noPools")),
    h("h3", { id: "h-quarantined" }, t("operator.quarantined")),
    table("quarantine-table", [t("field.node"), t("field.code"), t("field.claimedPool"), t("field.message"), t("field.labels")], quarantined, t("operator.noQuarantine")));
}

function deploymentsSection(deployments) {
  const rows = deployments.data.flatMap((d) => [
    h("tr", { class: "group", "data-deployment": d.name },
      h("th", { scope: "row" }, d.name), h("td", {}, d.model),
      h("td", {}, h("span", { class: `badge state-${d.status}` }, d.status)),
      h("td", { class: "num" }, `${d.replicas.length} / ${d.replicas_wanted}`),
      h("td", { colspan: 4 }, d.reason || list(d.audiences))),
    ...d.replicas.map((r) => h("tr", { class: "replica", "data-replica": r.id },
      h("td", { class: "indent" }, r.id), h("td", {}, r.pool),
      h("td", {}, h("span", { class: `badge state-${String(r.state).toLowerCase()}` }, r.state)),
      h("td", {}, h("span", { class: `badge j-${r.jurisdiction}` }, r.jurisdiction)),
      h("td", {}, h("code", {}, r.node_id)), h("td", {}, r.endpoint ? h("code", {}, r.endpoint) : "—"),
      h("td", {}, r.declaration ? h("code", {}, r.declaration) : "—"), h("td", {}, ""))),
  ]);
  return h("section", { "aria-labelledby": "h-deployments", id: "deployments" },
    h("h2", { id: "h-deployments" }, t("operator.deployments")),
    table("deployments-table", [t("field.name"), t("field.modelPool"), t("field.state"), t("field.replicas"), t("field.node"), t("field.endpoint"), t("field.declaration"), ""], rows, t("operator.noDeployments")));
}

function crisisSection(ctx, declarations, reload) {
  const message = h("div", { id: "crisis-message", role: "alert", "aria-live": "assertive" });
  const show = (ok, text) => replace(message, h("p", { class: ok ? "notice ok" : "error" }, text));

  async function act(path, body, done) {
    try {
      const result = await api.post(path, body);
      await reload();
      const box = document.getElementById("crisis-message");
      if (box) replace(box, h("p", { class: "notice ok" }, done(result)));
    } catch (err) {
      show(false, `${err.status} ${err.code}: ${err.message}`);
    }
  }

  const mine = ctx.me.jurisdiction;
  const rows = declarations.map((d) => {
    const approvable = d.status === "pending" && d.awaiting.length > 0;
    const revocable = d.status === "pending" || d.status === "active";
    return h("tr", { "data-declaration": d.id, "data-status": d.status },
      h("td", {}, h("code", {}, d.id)),
      h("td", {}, h("span", { class: `badge status-${d.status}` }, t(`status.${d.status}`))),
      h("td", {}, h("div", {}, list(d.scope.directions)), h("div", { class: "muted" }, `${list(d.scope.tenants)} · ${list(d.scope.markings)} · ${list(d.scope.models)}`)),
      h("td", {}, `${d.declared_by.operator} (${d.declared_by.jurisdiction})`),
      h("td", { class: "two-person" },
        t("crisis.backedBy", { sides: list(d.backed_by) }),
        d.awaiting.length ? h("div", { class: "muted" }, t("crisis.awaiting", { sides: list(d.awaiting) })) : null),
      h("td", { class: "nowrap" }, shortTime(d.valid_until)),
      h("td", { class: "reason-text" }, d.reason),
      h("td", { class: "nowrap" },
        approvable ? h("button", {
          type: "button", class: "approve", "aria-label": t("crisis.approveLabel", { id: d.id }),
          title: mine === d.declared_by.jurisdiction ? t("crisis.ownSide") : "",
          onclick: () => act(`/admin/crisis/${d.id}/approve`, {}, (r) => t("crisis.approved", { id: r.id, status: t(`status.${r.status}`) })),
        }, t("crisis.approve")) : null,
        revocable ? h("button", {
          type: "button", class: "revoke danger", "aria-label": t("crisis.revokeLabel", { id: d.id }),
          onclick: () => act(`/admin/crisis/${d.id}/revoke`, {}, (r) => t("crisis.revoked", { id: r.id })),
        }, t("crisis.revoke")) : null));
  });

  const corridor = ctx.corridor || { tenants: [], markings: [], models: [] };
  const form = h("form", { id: "declare-form", class: "declare", "aria-labelledby": "h-declare" },
    h("h3", { id: "h-declare" }, t("crisis.declareTitle")),
    h("p", { class: "muted" }, t("crisis.declareLead")),
    h("fieldset", {}, h("legend", {}, t("crisis.directions")),
      ["FR->DE", "DE->FR"].map((d) => h("label", { class: "inline" }, h("input", { type: "checkbox", name: "directions", value: d }), " ", d))),
    h("label", { for: "c-tenants" }, t("crisis.tenants")),
    h("input", { id: "c-tenants", name: "tenants", required: true, placeholder: corridor.tenants.map((x) => x.id).slice(0, 2).join(", "), autocomplete: "off" }),
    h("label", { for: "c-markings" }, t("crisis.markings")),
    h("input", { id: "c-markings", name: "markings", required: true, placeholder: corridor.markings.slice(0, 2).join(", "), autocomplete: "off" }),
    h("label", { for: "c-models" }, t("crisis.models")),
    h("input", { id: "c-models", name: "models", required: true, placeholder: corridor.models.join(", "), autocomplete: "off" }),
    h("label", { for: "c-reason" }, t("crisis.reason")),
    h("input", { id: "c-reason", name: "reason", required: true, autocomplete: "off" }),
    h("label", { for: "c-hours" }, t("crisis.hours")),
    h("input", { id: "c-hours", name: "hours", type: "number", min: "0.01", step: "0.01", value: "12", required: true }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "declare" }, t("crisis.declare"))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const split = (name) => String(data.get(name) || "").split(",").map((x) => x.trim()).filter(Boolean);
    act("/admin/crisis", {
      scope: { tenants: split("tenants"), markings: split("markings"), models: split("models"), directions: data.getAll("directions") },
      reason: String(data.get("reason") || ""), valid_for_hours: Number(data.get("hours")),
    }, (r) => t("crisis.declared", { id: r.id, awaiting: list(r.awaiting) }));
  });

  return h("section", { "aria-labelledby": "h-crisis", id: "crisis" },
    h("h2", { id: "h-crisis" }, t("operator.crisis")),
    h("p", { class: "lead" }, t("crisis.lead", { side: mine || "—" })),
    message,
    table("crisis-table", [t("field.id"), t("field.status"), t("field.scope"), t("crisis.declaredBy"), t("crisis.twoPerson"), t("crisis.validUntil"), t("crisis.reason"), ""], rows, t("crisis.none")),
    form);
}

function feedSection(feed, minSeverity, onFilter, onRefresh) {
  const rows = feed.data.map((r) => h("tr", { "data-event": (r.metadata || {}).event_code, "data-severity": r.severity_id },
    h("td", { class: "nowrap" }, shortTime(r.time_dt)),
    h("td", {}, h("span", { class: `badge ${SEVERITY_CLASSES[r.severity_id] || ""}` }, t(`severity.${r.severity_id}`, {}, r.severity))),
    h("td", {}, h("code", {}, (r.metadata || {}).event_code || r.class_name)),
    h("td", {}, r.message),
    h("td", { class: "num" }, (r.unmapped || {}).ledger_index ?? "—")));
  const filter = h("select", { id: "feed-severity", onchange: (e) => onFilter(Number(e.target.value)) },
    [0, 2, 3, 4, 5].map((n) => h("option", { value: n, selected: n === minSeverity }, n ? `≥ ${t(`severity.${n}`)}` : t("filter.any"))));
  return h("section", { "aria-labelledby": "h-feed", id: "feed" },
    h("h2", { id: "h-feed" }, t("operator.feed")),
    h("div", { class: "toolbar" }, h("label", { for: "feed-severity" }, t("feed.minSeverity")), filter,
      h("button", { type: "button", id: "feed-refresh", onclick: onRefresh }, t("feed.refresh")),
      h("span", { class: "muted" }, t("feed.newestFirst"))),
    table("feed-table", [t("field.time"), t("field.severity"), t("field.event"), t("field.message"), t("field.ledgerIndex")], rows, t("feed.none")));
}

export async function operatorView(root, ctx) {
  let minSeverity = 0;
  const boxes = { pools: h("div"), deployments: h("div"), crisis: h("div"), feed: h("div") };
  replace(root, h("h1", {}, t("operator.title")),
    h("p", { class: "lead" }, t("operator.lead", { side: ctx.me.jurisdiction || "—" })),
    boxes.pools, boxes.deployments, boxes.crisis, boxes.feed);

  const fail = (box, err) => replace(box, h("p", { class: "error", role: "alert" }, err.message));

  async function loadPools() {
    try { replace(boxes.pools, poolsSection(await api.get("/admin/pools"))); } catch (err) { fail(boxes.pools, err); }
  }
  async function loadDeployments() {
    try { replace(boxes.deployments, deploymentsSection(await api.get("/admin/deployments"))); } catch (err) { fail(boxes.deployments, err); }
  }
  async function loadCrisis() {
    if (!ctx.caps.crisis) { replace(boxes.crisis); return; }
    try {
      const previous = document.getElementById("crisis-message");
      const section = crisisSection(ctx, (await api.get("/admin/crisis")).data, reloadAfterStep);
      replace(boxes.crisis, section);
      if (previous && previous.childNodes.length) replace(document.getElementById("crisis-message"), ...previous.childNodes);
    } catch (err) { fail(boxes.crisis, err); }
  }
  async function loadFeed() {
    if (!ctx.caps.feed) { replace(boxes.feed); return; }
    try {
      const feed = await api.get("/console/api/security-events", { limit: 100, min_severity: minSeverity });
      replace(boxes.feed, feedSection(feed, minSeverity, (n) => { minSeverity = n; loadFeed(); }, loadFeed));
    } catch (err) { fail(boxes.feed, err); }
  }
  async function reloadAfterStep() {
    await Promise.all([loadCrisis(), loadFeed()]);
  }

  await Promise.all([loadPools(), loadDeployments(), loadCrisis(), loadFeed()]);
  const timer = setInterval(() => { loadPools(); loadDeployments(); loadFeed(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
