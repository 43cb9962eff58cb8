"""A Kubernetes API for tests: kmock's emulator, taught what the kubernetes driver relies on.

kmock 0.8 serves a real HTTP API that stores objects and merges PATCH bodies into them,
records every request, and keeps each object's history. A real API server also does five
things it does not, and the driver's behaviour depends on them:

- a Secret's `stringData` is stored base64-encoded in `data`;
- server-side apply (PATCH as application/apply-patch+yaml) creates a missing object;
- `resourceVersion` moves on every real change, and `generation` on every change of `spec`;
  a patch that changes nothing moves neither;
- deleting a namespace deletes what is in it (immediately here, or once its finalizers go);
- `/api/v1/namespaces[/name]` addresses Namespace objects (kmock reads that path as a namespace
  scope and fails on it; `namespace_paths` below fixes the parse for the test's duration).
"""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
import re
import uuid
from typing import Any

import attrs
import kmock
from kmock._internal import dicts, parsing

APPLY = "application/apply-patch+yaml"
NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?$")
_ORIGINAL_PARSE = parsing.parse_path


def _parse_namespace_paths(path: str) -> parsing.ParsedPath:
    match = _NAMESPACE_PATH.match(path)
    if match:
        return parsing.ParsedPath(group="", version="v1", plural="namespaces", namespace=None,
                                  name=match["name"], subresource=match["sub"])
    return _ORIGINAL_PARSE(path)


def namespace_paths(monkeypatch) -> None:
    monkeypatch.setattr(parsing, "parse_path", _parse_namespace_paths)


def _without_versions(obj: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(obj)
    for key in ("resourceVersion", "generation"):
        body.get("metadata", {}).pop(key, None)
    return body


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: kmock.Request):
        if request.resource is not None and request.name and request.action == kmock.action.UPDATE:
            async with self._lock:
                self._prepare_patch(request)
        response = await super()._handle(request)
        if request.resource == NAMESPACES and request.action == kmock.action.DELETE:
            async with self._lock:
                if (NAMESPACES, None, request.name) in self.objects and self.objects[NAMESPACES, None, request.name].deleted:
                    self._delete_contents(request.name)
        return response

    def _prepare_patch(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if request.resource == SECRETS and "stringData" in request.data:
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in request.data.pop("stringData").items()}
            request.data["data"] = {**request.data.get("data", {}), **encoded}
        is_apply = request.headers.get("Content-Type", "").startswith(APPLY)
        if key not in self.objects or self.objects[key].deleted:
            if is_apply:
                created = copy.deepcopy(request.data)
                created.setdefault("metadata", {}).update({
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "resourceVersion": str(next(self._versions)),
                    "generation": 1,
                })
                if key in self.objects:
                    self.objects[key].create(created)
                else:
                    self.objects[key] = created
            return
        current = self.objects[key].raw
        patched = dicts.patch_dict(copy.deepcopy(current), request.data)
        if _without_versions(patched) == _without_versions(current):
            return
        metadata = request.data.setdefault("metadata", {})
        metadata["resourceVersion"] = str(next(self._versions))
        if patched.get("spec") != current.get("spec"):
            metadata["generation"] = current.get("metadata", {}).get("generation", 1) + 1

    def _delete_contents(self, namespace: str) -> None:
        for (resource, ns, name), obj in list(self.objects.items()):
            if ns == namespace and not obj.deleted:
                obj.delete()

    def finish_terminating(self, namespace: str) -> None:
        """What the namespace controller does once a namespace's finalizers are done."""
        self._delete_contents(namespace)
        self.objects[NAMESPACES, None, namespace].delete()

    def live(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def set_status(self, resource: str, namespace: str | None, name: str, status: dict[str, Any]) -> None:
        """What a controller (here: the StatefulSet controller) reports back."""
        self.objects[kmock.resource(resource), namespace, name].patch({"status": status})
