"""A small client of the platform: the manager's REST API and a cluster's gateway endpoint, both
with the same API key. It knows nothing of the terminal; the CLI and scripts build on it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx


@dataclass
class ApiError(Exception):
    """An answer that is not a success, with what the API said: its error, message and fields."""

    status: int
    error: str
    message: str
    fields: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.error}: {self.message}"

    @property
    def route_missing(self) -> bool:
        # the API's own 404s name an error; an unknown route is the framework's bare {"detail": ...}
        return self.status in (404, 405) and self.error == "route_missing"

    @classmethod
    def of(cls, answer: httpx.Response) -> "ApiError":
        try:
            body = answer.json()
        except ValueError:
            return cls(answer.status_code, "http_error", answer.text[:300] or answer.reason_phrase)
        if not isinstance(body, dict):
            return cls(answer.status_code, "http_error", str(body)[:300])
        if "error" not in body and "detail" in body:  # no route here: FastAPI's answer, not the API's
            return cls(answer.status_code, "route_missing", str(body["detail"]))
        error = body.get("error")
        if isinstance(error, dict):  # an engine's error, through the gateway
            return cls(answer.status_code, error.get("type", "engine_error"), error.get("reason", json.dumps(error)))
        return cls(answer.status_code, str(error or "http_error"), str(body.get("message", body)),
                   body.get("fields") or [])


class Unreachable(Exception):
    """The API or the gateway did not answer at all."""


class Client:
    def __init__(self, url: str, key: str, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(headers={"Authorization": f"ApiKey {key}"}, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, target: str, **kwargs) -> dict | list | None:
        """One request; `target` is an API path or a full URL (a gateway endpoint). Raises ApiError."""
        url = target if target.startswith(("http://", "https://")) else self.url + target
        try:
            answer = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{url}: {type(exc).__name__} {exc}") from exc
        if answer.status_code >= 400:
            raise ApiError.of(answer)
        if answer.status_code == 204 or not answer.content:
            return None
        return answer.json()

    # clusters
    def clusters(self, tenant: str | None = None) -> list[dict]:
        return self.call("GET", "/clusters", params={"tenant_org_id": tenant} if tenant else None)["clusters"]

    def cluster(self, cluster_id: str) -> dict:
        return self.call("GET", f"/clusters/{cluster_id}")

    def create_cluster(self, body: dict) -> dict:
        return self.call("POST", "/clusters", json=body)

    def update_cluster(self, cluster_id: str, changes: dict) -> dict:
        return self.call("PATCH", f"/clusters/{cluster_id}", json=changes)

    def delete_cluster(self, cluster_id: str) -> dict:
        return self.call("DELETE", f"/clusters/{cluster_id}")

    def cluster_action(self, cluster_id: str, action: str, body: dict | None = None) -> dict:
        """hibernate, wake, undelete, restore, ...: POST /clusters/{id}/{action}."""
        return self.call("POST", f"/clusters/{cluster_id}/{action}", json=body)

    def events(self, cluster_id: str, limit: int | None = None) -> list[dict]:
        """The cluster's lifecycle events, oldest first: status changes, scaling decisions, actions."""
        params = {"limit": limit} if limit else None
        return self.call("GET", f"/clusters/{cluster_id}/events", params=params)["events"]

    # snapshots: the backups API's routes
    def snapshots(self, cluster_id: str) -> dict | list:
        return self.call("GET", f"/clusters/{cluster_id}/snapshots")

    def create_snapshot(self, cluster_id: str) -> dict:
        return self.call("POST", f"/clusters/{cluster_id}/snapshots")

    # tenants, keys, usage
    def is_operator(self) -> bool:
        return bool(self.call("GET", "/whoami")["operator"])

    def tenants(self) -> list[dict]:
        return self.call("GET", "/tenants")

    def keys(self, tenant: str) -> list[dict]:
        return self.call("GET", f"/tenants/{tenant}/keys")

    def create_key(self, tenant: str, expires_in_s: int | None) -> dict:
        return self.call("POST", f"/tenants/{tenant}/keys", json={"expires_in_s": expires_in_s} if expires_in_s else {})

    def revoke_key(self, tenant: str, key_id: str) -> None:
        self.call("DELETE", f"/tenants/{tenant}/keys/{key_id}")

    def usage(self, tenant: str, days: int) -> dict:
        end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        start = end - timedelta(days=days)
        return self.call("GET", f"/tenants/{tenant}/usage", params={"from": start.isoformat(), "to": end.isoformat()})

    # vector indices, through the API
    def create_vector_index(self, cluster_id: str, body: dict) -> dict:
        return self.call("POST", f"/clusters/{cluster_id}/vector-indices", json=body)

    def vector_search(self, cluster_id: str, index: str, body: dict) -> dict:
        return self.call("POST", f"/clusters/{cluster_id}/vector-indices/{index}/search", json=body)

    # the engine's own API, at the cluster's gateway endpoint
    def bulk(self, endpoint: str, index: str, documents: Iterable[dict]) -> dict:
        lines = []
        for document in documents:
            source = dict(document)
            action = {"_index": index}
            if "_id" in source:
                action["_id"] = str(source.pop("_id"))
            lines += [json.dumps({"index": action}), json.dumps(source)]
        return self.call("POST", f"{endpoint}/_bulk", content="\n".join(lines) + "\n",
                         headers={"Content-Type": "application/x-ndjson"})

    def text_search(self, endpoint: str, index: str, query: str, size: int) -> dict:
        return self.call("GET", f"{endpoint}/{index}/_search", params={"q": query, "size": size})
