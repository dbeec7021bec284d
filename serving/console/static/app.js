// The console's shell: sign-in, which views this key may see, the language switch, routing.
//
// Views follow what the APIs answer, never a role guessed in the page: the ledger shows
// when /audit/tree-head answers, the operator view when /admin/pools does, and so on; a
// 401/403/404 hides the view. The key is kept in sessionStorage only (api.js).

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { applyStatic, language, setLanguage, t } from "./i18n.js";
import { entryView } from "./view-entry.js";
import { ledgerView } from "./view-ledger.js";
import { operatorView } from "./view-operator.js";
import { picturesView } from "./view-pictures.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("signout");
const languages = document.getElementById("lang");

const VIEWS = [
  { id: "ledger", label: "nav.ledger", allowed: (c) => c.audit },
  { id: "pictures", label: "nav.pictures", allowed: (c) => c.audit || c.operator },
  { id: "operator", label: "nav.operator", allowed: (c) => c.operator },
  { id: "models", label: "nav.models", allowed: (c) => c.models },
];

let ctx = null;
let cleanup = null;

function signInView(error) {
  nav.replaceChildren();
  who.textContent = "";
  signOutButton.hidden = true;
  const input = h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off", spellcheck: "false", required: true, size: 48 });
  const form = h("form", { id: "signin", class: "signin", "aria-labelledby": "h-signin" },
    h("h1", { id: "h-signin" }, t("signin.title")),
    h("p", { class: "lead" }, t("signin.lead")),
    h("label", { for: "api-key" }, t("signin.key")), input,
    h("p", { class: "muted" }, t("signin.storage")),
    error ? h("p", { class: "error", role: "alert", id: "signin-error" }, error) : null,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("signin.button"))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    api.credentials.set(input.value.trim());
    start();
  });
  replace(main, form);
  input.focus();
}

async function start() {
  replace(main, h("p", { role: "status", class: "loading" }, t("loading")));
  let me;
  try {
    me = await api.get("/console/api/whoami");
  } catch (err) {
    api.credentials.clear();
    signInView(err.status === 401 ? t("signin.invalid") : err.message);
    return;
  }
  const [audit, operator, crisis, feed, models, corridor] = await Promise.all([
    api.probe("/audit/tree-head"),
    api.probe("/admin/pools"),
    api.probe("/admin/crisis"),
    api.probe("/console/api/security-events", { limit: 1 }),
    api.probe("/v1/models"),
    api.probe("/console/api/corridor"),
  ]);
  ctx = {
    me, corridor, models,
    caps: { audit: Boolean(audit), operator: Boolean(operator), crisis: Boolean(crisis), feed: Boolean(feed), models: Boolean(models) },
    rerender: route,
  };
  drawWho();
  signOutButton.hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = `#/${available()[0] || "none"}`;
  route();
}

function drawWho() {
  const me = ctx.me;
  const scope = me.audit_scope === "*" ? t("who.allTenants") : Array.isArray(me.audit_scope) ? me.audit_scope.join(", ") : null;
  who.textContent = [t(`role.${me.role}`), me.tenant, me.jurisdiction, scope].filter(Boolean).join(" · ");
  who.dataset.role = me.role;
}

function available() {
  return VIEWS.filter((v) => v.allowed(ctx.caps)).map((v) => v.id);
}

function drawNav(current) {
  replace(nav, h("ul", {}, VIEWS.filter((v) => v.allowed(ctx.caps)).map((v) => h("li", {},
    h("a", { href: `#/${v.id}`, id: `nav-${v.id}`, "aria-current": v.id === current ? "page" : null }, t(v.label))))));
}

async function route() {
  if (!ctx) return;
  if (cleanup) { cleanup(); cleanup = null; }
  const [, name = "", arg] = location.hash.split("/");
  const views = available();
  const view = name === "entry" && views.includes("ledger") ? "entry" : views.includes(name) ? name : views[0];
  drawNav(view === "entry" ? "ledger" : view);
  document.title = `${t(`nav.${view === "entry" ? "ledger" : view || "none"}`, {}, "")} · ${t("app.title")}`;
  try {
    if (view === "ledger") cleanup = await ledgerView(main, ctx);
    else if (view === "entry") cleanup = await entryView(main, ctx, Number(arg));
    else if (view === "pictures") cleanup = await picturesView(main, ctx);
    else if (view === "operator") cleanup = await operatorView(main, ctx);
    else if (view === "models") modelsView();
    else replace(main, h("h1", {}, t("none.title")), h("p", {}, t("none.lead")));
  } catch (err) {
    replace(main, h("p", { class: "error", role: "alert" }, err.message));
  }
  main.focus({ preventScroll: true });
}

function modelsView() {
  replace(main, h("h1", {}, t("models.title")),
    h("p", { class: "lead" }, t("models.lead")),
    h("ul", { id: "models" }, ctx.models.data.map((m) => h("li", {}, h("code", {}, m.id)))),
    h("p", { class: "note" }, t("models.noViews")));
}

function signOut() {
  if (cleanup) { cleanup(); cleanup = null; }
  api.credentials.clear();
  ctx = null;
  location.hash = "";
  signInView();
}

languages.value = language();
languages.addEventListener("change", () => {
  setLanguage(languages.value);
  applyStatic();
  if (ctx) { drawWho(); route(); } else { signInView(); }
});
signOutButton.addEventListener("click", signOut);
window.addEventListener("hashchange", route);
applyStatic();
if (api.credentials.get()) start(); else signInView();
