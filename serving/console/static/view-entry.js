// One ledger entry: its decision, reason codes, declaration and facts, and "verify" done
// here in the browser (see verify.js), shown step by step.

import * as api from "./api.js";
import { h, replace, shortTime } from "./dom.js";
import { t } from "./i18n.js";
import { toPlain } from "./json.js";
import { cryptoAvailable } from "./merkle.js";
import { ledgerState } from "./view-ledger.js";
import { pinnedKey, verifyItem } from "./verify.js";

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [
    h("dt", {}, k),
    h("dd", {}, v === null || v === "" ? h("span", { class: "muted" }, "—") : v),
  ]));
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** Fetch the item at `index` through /audit/entries (the auditor's own scope applies). */
async function fetchItem(index) {
  const tenant = ledgerState.filters.tenant;
  const page = await api.getLossless("/audit/entries", { after: index - 1, limit: 1, tenant });
  const item = page.data[0];
  return item && Number(item.index) === index ? item : null;
}

export async function entryView(root, ctx, index) {
  replace(root, h("p", { role: "status", class: "loading" }, t("loading")));
  let item;
  try {
    item = await fetchItem(index);
  } catch (err) {
    replace(root, h("p", { class: "error", role: "alert" }, err.message));
    return;
  }
  if (!item) {
    replace(root, h("h1", {}, t("entry.title", { index })), h("p", { class: "error", role: "alert" }, t("entry.notFound")),
      h("p", {}, h("a", { href: "#/ledger" }, "← ", t("entry.back"))));
    return;
  }
  const e = toPlain(item.entry);
  const w = e.workload || {};
  const decision = e.allowed === true
    ? h("p", { class: "decision ok", id: "decision" }, "✓ ", t("decision.allowed"))
    : e.allowed === false
      ? h("p", { class: "decision bad", id: "decision" }, "✗ ", t("decision.refused"))
      : h("p", { class: "decision", id: "decision" }, t("decision.none"));

  const stepsBox = h("ol", { class: "steps", id: "verify-steps", "aria-live": "polite" });
  const verdict = h("p", { class: "verdict", id: "verdict", role: "status", "aria-live": "polite" });
  const pin = h("input", { id: "pin", value: pinnedKey.get(), size: 66, spellcheck: "false", autocomplete: "off", placeholder: t("verify.pinPlaceholder") });
  const verifyButton = h("button", { type: "button", id: "verify", class: "primary", onclick: run }, t("verify.button"));

  replace(root,
    h("p", {}, h("a", { href: "#/ledger" }, "← ", t("entry.back"))),
    h("h1", {}, t("entry.title", { index })),
    h("div", { class: "entry-grid" },
      h("section", { "aria-labelledby": "h-decision" },
        h("h2", { id: "h-decision" }, t("entry.decision")),
        decision,
        h("h3", {}, t("field.reasons")),
        e.reasons && e.reasons.length
          ? h("ul", { class: "reasons", id: "reasons" }, e.reasons.map((r) => h("li", {}, h("code", {}, r), " ", h("span", { class: "muted" }, t(`reason.${r}`, {}, "")))))
          : h("p", { class: "muted", id: "reasons" }, t("entry.noReasons")),
        h("h3", {}, t("field.declaration")),
        h("p", { id: "declaration" }, e.declaration ? h("code", {}, e.declaration) : h("span", { class: "muted" }, t("entry.noDeclaration"))),
        facts([
          [t("field.kind"), e.kind],
          [t("field.time"), shortTime(e.timestamp)],
          [t("field.tenant"), e.tenant],
          [t("field.decisionId"), e.decision_id ? h("code", {}, e.decision_id) : null],
          [t("field.workload"), w.kind ? `${w.kind} · ${w.model || "—"} · ${w.marking || "—"}${(w.data_flags || []).length ? " · " + w.data_flags.join(", ") : ""}` : null],
          [t("field.pool"), e.pool],
          [t("field.jurisdiction"), e.jurisdiction],
          [t("field.node"), e.node_id ? h("code", {}, e.node_id) : null],
          [t("field.policy"), e.policy_digest ? h("code", { class: "hash" }, e.policy_digest) : null],
          [t("field.leafHash"), h("code", { class: "hash" }, item.leaf_hash)],
        ]),
        h("details", {}, h("summary", {}, t("entry.detail")), json(e.detail || {})),
        h("details", {}, h("summary", {}, t("entry.raw")), json(e))),
      h("section", { "aria-labelledby": "h-verify", class: "verify" },
        h("h2", { id: "h-verify" }, t("verify.title")),
        h("p", { class: "lead" }, t("verify.lead")),
        h("label", { for: "pin" }, t("verify.pin")), pin,
        h("div", { class: "actions" }, verifyButton),
        verdict, stepsBox)));

  async function run() {
    pinnedKey.set(pin.value);
    if (!cryptoAvailable()) {
      verdict.className = "verdict bad";
      verdict.textContent = t("verify.insecure");
      return;
    }
    verifyButton.disabled = true;
    replace(stepsBox);
    verdict.className = "verdict";
    verdict.textContent = t("verify.running");
    try {
      const result = await verifyItem(item, (step) => stepsBox.append(renderStep(step)));
      verdict.className = result.ok ? "verdict ok" : "verdict bad";
      verdict.dataset.result = result.ok ? "verified" : "failed";
      verdict.textContent = result.ok
        ? t("verify.ok", { index, size: result.head.tree_size })
        : t("verify.failed", { steps: result.steps.filter((s) => !s.ok).map((s) => t(`step.${s.id}`)).join(", ") });
    } catch (err) {
      verdict.className = "verdict bad";
      verdict.dataset.result = "error";
      verdict.textContent = err.message;
    } finally {
      verifyButton.disabled = false;
    }
  }
}

function renderStep(step) {
  return h("li", { class: `step ${step.ok ? "ok" : "bad"}`, "data-step": step.id, "data-ok": String(step.ok) },
    h("h3", {}, h("span", { class: "mark", "aria-hidden": "true" }, step.ok ? "✓" : "✗"), " ",
      t(`step.${step.id}`), " — ", h("span", { class: "step-result" }, step.ok ? t("step.passed") : t("step.failedShort"))),
    h("p", { class: "muted" }, t(`step.${step.id}.how`)),
    step.error ? h("p", { class: "error" }, t(`error.${step.error}`, {}, step.error)) : null,
    h("dl", { class: "facts small" }, step.facts.flatMap(([k, v]) => [h("dt", {}, t(`fact.${k}`, {}, k)), h("dd", {}, h("code", { class: "hash" }, v))])),
    step.path && step.path.length
      ? h("table", { class: "path" },
        h("thead", {}, h("tr", {}, [t("path.level"), t("path.side"), t("path.sibling"), t("path.result")].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, step.path.map((n) => h("tr", {},
          h("td", {}, String(n.level)), h("td", {}, t(`path.${n.side}`)),
          h("td", {}, h("code", { class: "hash" }, n.sibling)), h("td", {}, h("code", { class: "hash" }, n.result))))))
      : null);
}
