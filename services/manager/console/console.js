// The console's views and router: sign-in, the clusters (live), the operator's fleet; a cluster's
// page is in cluster.js. Everything goes through the public API in api.js.

import { api, ApiError, session } from "./api.js";
import { badge, bytes, every, h, stopTimers, table } from "./dom.js";
import { clusterPage } from "./cluster.js";

const view = document.getElementById("view");
const STATUS_POLL_MS = 2000;   // statuses come from the API and cost the engines nothing
const SIZE_POLL_MS = 30000;    // documents and size come from the engines, through the gateway
const SERVING = ["ready", "scaling"];

function signIn(message) {
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  const key = h("input", { id: "key", type: "password", placeholder: "ess_... or the operator key", autocomplete: "off" });
  const error = h("div", { class: "error", id: "signin-error" }, message || "");
  const form = h("form", { id: "signin-form", onsubmit: async event => {
    event.preventDefault();
    session.key = key.value.trim();
    try {
      await api.tenants();
      location.hash = "#/";
      route();
    } catch (e) {
      session.key = null;
      error.textContent = e instanceof ApiError ? e.describe() : String(e);
    }
  } }, h("label", { for: "key" }, "API key"), key, h("button", { id: "signin", type: "submit" }, "Sign in"), error);
  view.replaceChildren(h("section", { id: "signin-box" }, h("h2", {}, "Sign in"),
    h("p", { class: "muted" }, "With a tenant's API key, or the operator's for the whole fleet. The key stays in this tab."),
    form));
  key.focus();
}

// documents and size of each serving cluster, read slowly: each read through the gateway counts
// as activity and would keep a cluster from hibernating
const sizes = {};
const sizedAt = {};
function refreshSizes(clusters) {
  const now = Date.now();
  for (const c of clusters.filter(c => SERVING.includes(c.status) && c.endpoint)) {
    if (now - (sizedAt[c.id] || 0) < SIZE_POLL_MS) continue;
    sizedAt[c.id] = now;
    api.indices(c.endpoint).then(indices => {
      sizes[c.id] = { docs: indices.reduce((s, i) => s + Number(i["docs.count"] || 0), 0),
                      size: indices.reduce((s, i) => s + Number(i["store.size"] || 0), 0) };
    }, () => { /* hibernating or starting: keep the last numbers */ });
  }
}

function clusterRows(clusters, operator) {
  return clusters.map(c => h("tr", { class: "link", "data-cluster": c.id, onclick: () => { location.hash = `#/clusters/${c.id}`; } },
    h("td", {}, h("strong", {}, c.service_name), h("div", { class: "muted" }, c.id)),
    operator ? h("td", {}, c.tenant_org_id) : null,
    h("td", { class: "status" }, badge(c.status), h("div", { class: "muted" }, (c.status_reason || "").slice(0, 60))),
    h("td", { class: "health" }, badge(c.health)),
    h("td", { class: "nodes" }, `${c.nodes}/${c.replicas}`),
    h("td", { class: "docs" }, sizes[c.id] ? sizes[c.id].docs.toLocaleString() : "-"),
    h("td", { class: "size" }, sizes[c.id] ? bytes(sizes[c.id].size) : "-"),
    h("td", {}, `${c.engine} ${c.version}`)));
}

function fleet(clusters, tenants) {
  const rows = tenants.map(t => {
    const own = clusters.filter(c => c.tenant_org_id === t.tenant_org_id);
    const q = t.quotas || {};
    return h("tr", { "data-tenant": t.tenant_org_id }, h("td", {}, t.tenant_org_id),
      h("td", {}, `${own.length} / ${q.max_clusters ?? "-"}`),
      h("td", {}, `${own.reduce((s, c) => s + c.replicas, 0)} / ${q.max_nodes ?? "-"}`),
      h("td", {}, own.filter(c => c.status === "ready").length),
      h("td", {}, own.filter(c => c.status === "hibernated").length),
      h("td", {}, own.filter(c => c.status === "failed" || c.health === "red").length));
  });
  return h("section", { id: "fleet" }, h("h2", {}, `Fleet: ${tenants.length} tenants, ${clusters.length} clusters`),
    table(["tenant", "clusters / quota", "nodes / quota", "ready", "hibernated", "failed or red"], rows));
}

async function clustersPage(operator) {
  const list = h("section", { id: "clusters" }, h("h2", {}, "Clusters"), h("p", { class: "muted" }, "loading..."));
  const fleetBox = h("div");
  view.replaceChildren(fleetBox, list);
  let latest;
  every(STATUS_POLL_MS, async () => {
    try {
      latest = await api.clusters();
      refreshSizes(latest);
      const columns = ["cluster", operator ? "tenant" : null, "status", "health", "nodes", "documents", "size", "engine"]
        .filter(Boolean);
      list.replaceChildren(h("h2", {}, `Clusters (${latest.length})`), latest.length
        ? table(columns, clusterRows(latest, operator))
        : h("p", { class: "muted" }, "No clusters yet: create one with `ess clusters create` or POST /clusters."));
      if (operator) fleetBox.replaceChildren(fleet(latest, await api.tenants()));
    } catch (e) { handle(e, list); }
  });
}

export function handle(error, where) {
  if (error instanceof ApiError && error.status === 401) { session.key = null; return signIn("The key was refused."); }
  where.append(h("div", { class: "error" }, error instanceof ApiError ? error.describe() : String(error)));
}

async function route() {
  stopTimers();
  if (!session.key) return signIn();
  document.getElementById("signout").hidden = false;
  const tenants = await api.tenants().catch(() => null);
  if (tenants === null) { session.key = null; return signIn("The key was refused."); }
  const operator = await api.isOperator().catch(() => false);
  document.getElementById("who").textContent = operator
    ? `operator: ${tenants.length} tenants` : `tenant ${tenants.map(t => t.tenant_org_id).join(", ")}`;
  const match = location.hash.match(/^#\/clusters\/(c[0-9a-f]{12})$/);
  return match ? clusterPage(view, match[1]) : clustersPage(operator);
}

document.getElementById("signout").addEventListener("click", () => { session.key = null; location.hash = "#/"; route(); });
window.addEventListener("hashchange", route);
route();
