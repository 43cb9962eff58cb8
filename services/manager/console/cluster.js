// A cluster's page: its status (live), indices, a search box (text through the endpoint, kNN
// through the API's vector route), its snapshots, events and usage.

import { api, ApiError } from "./api.js";
import { badge, bytes, every, h, table } from "./dom.js";
import { handle } from "./console.js";

const USAGE_DAYS = 14;

function summary(c) {
  return [h("h1", {}, `${c.service_name} `, h("span", { class: "muted" }, c.id)),
    h("div", { class: "row" }, "status ", badge(c.status), " health ", badge(c.health),
      ` nodes ${c.nodes}/${c.replicas} · ${c.engine} ${c.version} · ${c.cpu} CPU, ${c.memory}, ${c.storage}`),
    h("p", { class: "muted" }, c.status_reason || ""),
    h("p", {}, "endpoint: ", h("code", { id: "endpoint" }, c.endpoint || "not yet"))];
}

function indicesTable(indices) {
  if (!indices.length) return h("p", { class: "muted" }, "No indices yet.");
  return table(["index", "health", "documents", "size"], indices.map(i => h("tr", { "data-index": i.name },
    h("td", {}, i.name, i.name !== i.index ? h("div", { class: "muted" }, i.index) : null), h("td", {}, badge(i.health)), h("td", { class: "docs" }, i["docs.count"]),
    h("td", {}, bytes(Number(i["store.size"]))))));
}

function hitsList(hits) {
  if (!hits.length) return h("p", { class: "muted" }, "No hits.");
  return hits.map(hit => h("div", { class: "hit", "data-id": hit.id }, h("strong", {}, hit.id), " ",
    h("span", { class: "muted" }, hit.score == null ? "" : hit.score.toFixed(4)), h("br"),
    h("code", {}, JSON.stringify(hit.fields).slice(0, 300))));
}

function searchBox(cluster) {
  const index = h("select", { id: "search-index" });
  const query = h("input", { id: "search-query", size: 40, placeholder: "title:pie, or a vector [1, 0, 0] for kNN" });
  const k = h("input", { id: "search-k", type: "number", min: 1, max: 100, value: 10, style: "width: 70px" });
  const hits = h("div", { id: "hits" });
  const form = h("form", { class: "row", onsubmit: async event => {
    event.preventDefault();
    hits.replaceChildren(h("p", { class: "muted" }, "searching..."));
    try {
      const text = query.value.trim();
      let found;
      if (text.startsWith("[")) {   // a vector: kNN through the API
        found = (await api.knn(cluster().id, index.value, JSON.parse(text), Number(k.value))).hits;
      } else {
        const answer = await api.textSearch(cluster().endpoint, index.value, text || "*", Number(k.value));
        found = answer.hits.hits.map(x => ({ id: x._id, score: x._score, fields: x._source }));
      }
      hits.replaceChildren(h("p", { class: "muted", id: "hit-count" }, `${found.length} hits`), ...hitsList(found));
    } catch (e) {
      hits.replaceChildren(h("div", { class: "error" }, e instanceof ApiError ? e.describe() : String(e)));
    }
  } }, index, query, k, h("button", { id: "search-run", type: "submit" }, "Search"));
  const setIndices = names => {
    const chosen = index.value;
    index.replaceChildren(...names.map(n => h("option", { value: n }, n)));
    if (names.includes(chosen)) index.value = chosen;
  };
  return { element: h("section", { id: "search" }, h("h2", {}, "Search"), form, hits), setIndices };
}

async function snapshots(box, id) {
  const draw = async () => {
    try {
      const items = (await api.snapshots(id)).snapshots;
      box.replaceChildren(h("h2", {}, "Snapshots"),
        h("button", { id: "snapshot-take", onclick: async () => { await api.takeSnapshot(id).catch(e => handle(e, box)); draw(); } },
          "Take a snapshot"),
        items.length ? table(["snapshot", "state", "started", ""], items.map(s =>
          h("tr", {}, h("td", {}, s.name), h("td", {}, s.status),
            h("td", {}, (s.started_at || "").replace(/\.\d+/, "")),
            h("td", {}, h("button", { class: "plain", onclick: () => confirm(`Restore ${id} from ${s.name}?`) &&
              api.restore(id, s.name).then(draw, e => handle(e, box)) }, "Restore"))))) :
          h("p", { class: "muted" }, "No snapshots yet."));
    } catch (e) {
      handle(e, box);
    }
  };
  draw();
}

function usageChart(records, id) {
  const perDay = {};
  for (let d = USAGE_DAYS - 1; d >= 0; d--) perDay[new Date(Date.now() - d * 86400000).toISOString().slice(0, 10)] = 0;
  for (const r of records.filter(r => r.cluster_id === id)) {
    const day = r.period_start.slice(0, 10);
    if (day in perDay) perDay[day] += r.node_hours;
  }
  const days = Object.keys(perDay), max = Math.max(...Object.values(perDay), 0.001);
  const width = 36, height = 120, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${days.length * width} ${height + 30}`);
  svg.setAttribute("id", "usage-chart");
  days.forEach((day, i) => {
    const bar = document.createElementNS(ns, "rect"), label = document.createElementNS(ns, "text");
    const tall = Math.max(1, (perDay[day] / max) * height);
    Object.entries({ x: i * width + 6, y: height - tall, width: width - 12, height: tall })
      .forEach(([k, v]) => bar.setAttribute(k, v));
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${day}: ${perDay[day].toFixed(3)} node-hours`;
    bar.append(tip);
    Object.entries({ x: i * width + 4, y: height + 16 }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = day.slice(5);
    svg.append(bar, label);
  });
  return svg;
}

// what an event says to a person, as `ess clusters events` says it: scaling decisions with their reason
function eventText(e) {
  if (e.kind === "plan") {
    const decided = e.nodes !== e.current_nodes ? `nodes ${e.current_nodes} -> ${e.nodes}` : `nodes kept at ${e.nodes}`;
    return `${decided}: ${e.reason}`;
  }
  if (e.kind === "scale") return `${e.nodes} node(s) asked of the platform: ${e.reason}`;
  if (e.kind === "action") return `${e.action} ${e.outcome}: ${e.detail}`;
  return [e.status, e.change, e.reason].filter(Boolean).join(": ");
}

function eventRows(events) {
  return events.slice(-20).reverse().map(e => h("tr", {}, h("td", {}, (e.occurred_at || e.at || "").slice(0, 19)),
    h("td", {}, e.kind), h("td", {}, eventText(e))));
}

export async function clusterPage(view, id) {
  let current = null;
  const head = h("section", { id: "cluster" }, h("p", { class: "muted" }, "loading..."));
  const indicesBox = h("section", { id: "indices" }, h("h2", {}, "Indices"));
  const search = searchBox(() => current);
  const snapshotBox = h("section", { id: "snapshots" }, h("h2", {}, "Snapshots"));
  const eventsBox = h("section", { id: "events" }, h("h2", {}, "Events"));
  const usageBox = h("section", { id: "usage" }, h("h2", {}, "Usage"));
  view.replaceChildren(h("p", {}, h("a", { href: "#/" }, "← all clusters")), head, indicesBox, search.element,
    h("div", { class: "grid" }, snapshotBox, usageBox), eventsBox);
  let indicesAt = 0;
  const loadIndices = async () => {   // through the gateway: at most every 10 s, as it counts as activity
    indicesAt = Date.now();
    try {
      // the platform names a vector index by an alias over a concrete index (it can reshard it)
      const [all, aliases] = await Promise.all([api.indices(current.endpoint), api.aliases(current.endpoint)]);
      const named = Object.fromEntries(aliases.map(a => [a.index, a.alias]));
      const indices = all.filter(i => !i.index.startsWith(".")).map(i => ({ ...i, name: named[i.index] || i.index }));
      indicesBox.replaceChildren(h("h2", {}, "Indices"), indicesTable(indices));
      search.setIndices(indices.map(i => i.name));
    } catch (e) { indicesBox.replaceChildren(h("h2", {}, "Indices")); handle(e, indicesBox); }
  };
  every(2000, async () => {
    try {
      current = await api.cluster(id);
      head.replaceChildren(...summary(current));
    } catch (e) { head.replaceChildren(); return handle(e, head); }
    if (current.status === "hibernated") {   // from the record: looking at a sleeping cluster must not wake it
      indicesBox.replaceChildren(h("h2", {}, "Indices"), h("p", { id: "asleep" },
        `Asleep, holding ${current.stored_documents} documents (${bytes(current.stored_bytes)}) as of its hibernation; `
        + "the next request to its endpoint wakes it."));
    } else if (!current.endpoint || !["ready", "scaling"].includes(current.status)) {
      indicesBox.replaceChildren(h("h2", {}, "Indices"), h("p", { class: "muted" }, "Once the cluster is ready."));
    } else if (Date.now() - indicesAt > 10000) loadIndices();
  });
  every(5000, async () => {
    try { eventsBox.replaceChildren(h("h2", {}, "Events"), table(["time", "kind", "what"], eventRows(await api.events(id)))); }
    catch (e) { handle(e, eventsBox); }
  });
  snapshots(snapshotBox, id);
  try {
    const first = current || await api.cluster(id);
    const usage = await api.usage(first.tenant_org_id, USAGE_DAYS);
    usageBox.replaceChildren(h("h2", {}, `Usage: node-hours per day, last ${USAGE_DAYS} days`), usageChart(usage.records, id));
  } catch (e) { handle(e, usageBox); }
}
