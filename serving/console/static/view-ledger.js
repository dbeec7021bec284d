// The auditor's ledger: a paged table of /audit/entries with its filters, and the export of
// a tenant's entries with inclusion proofs, verified in the browser before it is saved.

import * as api from "./api.js";
import { download, h, replace, shortTime } from "./dom.js";
import { t } from "./i18n.js";
import { parseLossless, toPlain } from "./json.js";
import { headSteps, verifyExport } from "./verify.js";

const KINDS = ["placement", "routing", "violation", "security", "policy", "crisis"];
const PAGE_SIZES = [25, 50, 100];

/** Filters and paging survive a visit to an entry and a language switch. */
export const ledgerState = {
  filters: { tenant: "", kind: "", jurisdiction: "", since: "", until: "" },
  limit: 25,
  pages: [null], // the `after` of each page visited; the last is the current page
};

function rfc3339(localValue) {
  return localValue ? new Date(localValue).toISOString() : "";
}

function params() {
  const f = ledgerState.filters;
  return {
    tenant: f.tenant, kind: f.kind, jurisdiction: f.jurisdiction,
    since: rfc3339(f.since), until: rfc3339(f.until),
    after: ledgerState.pages[ledgerState.pages.length - 1], limit: ledgerState.limit,
  };
}

function decisionCell(entry) {
  if (entry.allowed === true) return h("span", { class: "badge ok" }, "✓ ", t("decision.allowed"));
  if (entry.allowed === false) return h("span", { class: "badge bad" }, "✗ ", t("decision.refused"));
  return h("span", { class: "muted" }, "—");
}

function jurisdictionCell(j) {
  return j ? h("span", { class: `badge j-${j}` }, j) : h("span", { class: "muted" }, "—");
}

function tenantField(ctx) {
  const scope = ctx.me.audit_scope;
  const f = ledgerState.filters;
  if (Array.isArray(scope)) {
    if (!f.tenant && scope.length === 1) f.tenant = scope[0];
    return h("select", { id: "f-tenant", name: "tenant" },
      scope.length > 1 ? h("option", { value: "" }, t("filter.choose")) : null,
      scope.map((id) => h("option", { value: id, selected: id === f.tenant }, id)));
  }
  const tenants = (ctx.corridor && ctx.corridor.tenants) || [];
  return [
    h("input", { id: "f-tenant", name: "tenant", value: f.tenant, list: "tenant-ids", autocomplete: "off", placeholder: t("filter.any") }),
    h("datalist", { id: "tenant-ids" }, tenants.map((x) => h("option", { value: x.id }, x.name))),
  ];
}

function select(id, name, value, options) {
  return h("select", { id, name },
    h("option", { value: "" }, t("filter.any")),
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

export async function ledgerView(root, ctx) {
  const f = ledgerState.filters;
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const tableBox = h("div", { class: "table-box" });
  const pager = h("div", { class: "pager" });
  const exportBox = h("div", { class: "export-result", role: "status", "aria-live": "polite" });

  const form = h("form", { class: "filters", id: "ledger-filters", "aria-label": t("ledger.filters") },
    h("label", { for: "f-tenant" }, t("field.tenant")), tenantField(ctx),
    h("label", { for: "f-kind" }, t("field.kind")), select("f-kind", "kind", f.kind, KINDS),
    h("label", { for: "f-jurisdiction" }, t("field.jurisdiction")), select("f-jurisdiction", "jurisdiction", f.jurisdiction, ["FR", "DE"]),
    h("label", { for: "f-since" }, t("filter.since")), h("input", { id: "f-since", name: "since", type: "datetime-local", step: 1, value: f.since }),
    h("label", { for: "f-until" }, t("filter.until")), h("input", { id: "f-until", name: "until", type: "datetime-local", step: 1, value: f.until }),
    h("label", { for: "f-limit" }, t("filter.limit")),
    h("select", { id: "f-limit", name: "limit" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === ledgerState.limit }, String(n)))),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("filter.apply")),
      h("button", { type: "button", id: "f-reset", onclick: () => { ledgerState.filters = { tenant: "", kind: "", jurisdiction: "", since: "", until: "" }; ledgerState.pages = [null]; ctx.rerender(); } }, t("filter.reset")),
      h("button", { type: "button", id: "export", onclick: () => exportTenant(ctx, exportBox) }, t("export.button"))));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    for (const key of Object.keys(f)) f[key] = String(data.get(key) || "").trim();
    ledgerState.limit = Number(data.get("limit")) || 25;
    ledgerState.pages = [null];
    load();
  });

  replace(root,
    h("h1", {}, t("ledger.title")),
    h("p", { class: "lead" }, t("ledger.lead")),
    form, exportBox, status, tableBox, pager);

  async function load() {
    status.textContent = t("loading");
    let page;
    try {
      page = await api.get("/audit/entries", params());
    } catch (err) {
      status.textContent = "";
      replace(tableBox, h("p", { class: "error", role: "alert" }, err.message));
      replace(pager);
      return;
    }
    const items = page.data;
    status.textContent = items.length
      ? t("ledger.showing", { first: items[0].index, last: items[items.length - 1].index })
      : t("ledger.none");
    replace(tableBox, h("table", { class: "entries", id: "entries" },
      h("caption", { class: "visually-hidden" }, t("ledger.title")),
      h("thead", {}, h("tr", {},
        ["#", t("field.time"), t("field.kind"), t("field.tenant"), t("field.pool"), t("field.jurisdiction"),
          t("field.decision"), t("field.reasons"), t("field.declaration")].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, items.map(({ index, entry }) => h("tr", { "data-index": index },
        h("td", {}, h("a", { href: `#/entry/${index}`, "aria-label": t("ledger.open", { index }) }, String(index))),
        h("td", { class: "nowrap" }, shortTime(entry.timestamp)),
        h("td", {}, entry.kind),
        h("td", {}, entry.tenant || "—"),
        h("td", {}, entry.pool || "—"),
        h("td", {}, jurisdictionCell(entry.jurisdiction)),
        h("td", {}, decisionCell(entry)),
        h("td", {}, (entry.reasons || []).map((r) => h("code", { class: "reason" }, r))),
        h("td", {}, entry.declaration ? h("code", {}, entry.declaration) : "—"),
      )))));
    const back = ledgerState.pages.length > 1;
    replace(pager,
      h("button", { type: "button", id: "page-prev", disabled: !back, onclick: () => { ledgerState.pages.pop(); load(); } }, "← ", t("page.previous")),
      h("span", { class: "muted" }, t("page.number", { n: ledgerState.pages.length })),
      h("button", { type: "button", id: "page-next", disabled: !page.has_more, onclick: () => { ledgerState.pages.push(items[items.length - 1].index); load(); } }, t("page.next"), " →"));
  }

  await load();
}

/** Export the tenant's entries with inclusion proofs in the current signed tree, verify them
 *  here against that head (signature included), and offer them for download. */
async function exportTenant(ctx, box) {
  const tenant = (document.getElementById("f-tenant").value || "").trim();
  if (!tenant) {
    replace(box, h("p", { class: "error", role: "alert" }, t("export.needTenant")));
    return;
  }
  replace(box, h("p", {}, t("export.running", { tenant })));
  try {
    const head = await api.getLossless("/audit/tree-head");
    const published = await api.get("/audit/public-key");
    const checks = await headSteps(head, published);
    const size = Number(head.tree_size);
    const text = await api.getText("/audit/export", { tenant, tree_size: size });
    const lines = text.split("\n").filter(Boolean).map(parseLossless);
    const failures = checks.every((c) => c.ok) ? await verifyExport(lines, head) : [{ index: "-", error: checks.find((c) => !c.ok).error }];
    const ok = failures.length === 0;
    const name = `corridor-${tenant}-${size}`;
    // The three files `corridor audit verify --export … --tree-head … --public-key …` reads.
    const headFile = JSON.stringify(toPlain(head), null, 1);
    const keyFile = JSON.stringify(published, null, 1);
    replace(box,
      h("p", { class: ok ? "verdict ok" : "verdict bad", id: "export-verdict" },
        ok ? t("export.verified", { count: lines.length, size }) : t("export.failed", { count: failures.length })),
      failures.length ? h("ul", {}, failures.slice(0, 10).map((x) => h("li", {}, `#${x.index}: ${x.error}`))) : null,
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => download(`${name}.jsonl`, text, "application/x-ndjson") }, t("export.saveEntries")),
        h("button", { type: "button", onclick: () => download(`${name}-tree-head.json`, headFile) }, t("export.saveHead")),
        h("button", { type: "button", onclick: () => download(`${name}-public-key.json`, keyFile) }, t("export.saveKey"))));
  } catch (err) {
    replace(box, h("p", { class: "error", role: "alert" }, err.message));
  }
}
