// The console's client of the platform: the manager's public API (this page's origin) and the
// clusters' gateway endpoints, both with the key the user signed in with (kept in sessionStorage,
// so it is gone with the tab).

const KEY = "ess.key";

export class ApiError extends Error {
  constructor(status, body) {
    const missing = body && !body.error && body.detail;  // no such route: FastAPI's own answer
    super((body && (body.message || (body.error && body.error.reason) || body.detail)) || `HTTP ${status}`);
    this.status = status;
    this.error = missing ? "route_missing" : (body && (typeof body.error === "string" ? body.error : "engine_error"));
    this.fields = (body && body.fields) || [];
  }
  describe() {
    return [this.message, ...this.fields.map(f => `${f.field}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ""}`)]
      .join("\n");
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
};

async function send(method, url, body) {
  const headers = { Authorization: `ApiKey ${session.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await answer.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { message: text.slice(0, 300) }; }
  if (!answer.ok) throw new ApiError(answer.status, parsed);
  return parsed;
}

export const api = {
  call: (method, path, body) => send(method, path, body),
  clusters: () => send("GET", "/clusters").then(b => b.clusters),
  cluster: id => send("GET", `/clusters/${id}`),
  events: id => send("GET", `/clusters/${id}/events?limit=50`).then(b => b.events),
  tenants: () => send("GET", "/tenants"),
  snapshots: id => send("GET", `/clusters/${id}/snapshots`),
  takeSnapshot: id => send("POST", `/clusters/${id}/snapshots`, {}),
  restore: (id, snapshot) => send("POST", `/clusters/${id}/restore`, { snapshot }),
  knn: (id, index, vector, k) => send("POST", `/clusters/${id}/vector-indices/${index}/search`, { vector, k }),
  usage: (tenant, days) => {
    const end = new Date(); end.setUTCHours(24, 0, 0, 0);
    const start = new Date(end.getTime() - days * 86400000);
    const query = new URLSearchParams({ from: start.toISOString(), to: end.toISOString() });
    return send("GET", `/tenants/${tenant}/usage?${query}`);
  },
  // who the key is: the operator sees the fleet
  isOperator: () => send("GET", "/whoami").then(me => me.operator),
  // the engine's own API at the cluster's endpoint (the gateway answers browsers' preflights)
  indices: endpoint => send("GET", `${endpoint}/_cat/indices?format=json&bytes=b&s=index`),
  aliases: endpoint => send("GET", `${endpoint}/_cat/aliases?format=json`),
  textSearch: (endpoint, index, q, size) =>
    send("GET", `${endpoint}/${encodeURIComponent(index)}/_search?${new URLSearchParams({ q, size })}`),
};
