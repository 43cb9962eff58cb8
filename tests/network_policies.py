"""Whether a set of NetworkPolicies lets a source reach a pod's port, by the rules' meaning in
the Kubernetes API (no network plugin runs in the tests), so a test can name who is kept out.

Policies are manifests as rendered, built by kustomize or read back from the API server. Only
what the platform's policies use is modelled; anything else (ipBlock, named ports) raises,
rather than being guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def all_namespace_labels(self) -> dict[str, str]:
        # the API server sets the name label on every namespace, whatever else it carries
        return {**self.namespace_labels, NAMESPACE_NAME_LABEL: self.namespace}


OUTSIDE = None  # a client outside the cluster (through a load balancer): no pod, no namespace


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector; an empty one selects everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        held = {"In": key in labels and labels[key] in values,
                "NotIn": key not in labels or labels[key] not in values,
                "Exists": key in labels,
                "DoesNotExist": key not in labels}[operator]
        if not held:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, source: Pod | None) -> bool:
    if "ipBlock" in peer and peer["ipBlock"] is not None:
        raise NotImplementedError("ipBlock peers are not modelled")
    if source is None:
        return False
    namespace_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespace_selector is None:
        # a pod selector alone looks in the policy's own namespace only
        in_namespace = source.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, source.all_namespace_labels())
    return in_namespace and (pod_selector is None or selects(pod_selector, source.labels))


def _port_matches(entry: dict[str, Any], port: int, protocol: str) -> bool:
    if (entry.get("protocol") or "TCP") != protocol:
        return False
    if entry.get("port") is None:
        return True
    if not isinstance(entry["port"], int):
        raise NotImplementedError(f"named port {entry['port']!r} is not modelled")
    return entry["port"] <= port <= (entry.get("endPort") or entry["port"])


def _rule_admits(rule: dict[str, Any], policy_namespace: str, source: Pod | None, port: int, protocol: str) -> bool:
    ports, peers = rule.get("ports") or [], rule.get("from") or []
    if ports and not any(_port_matches(entry, port, protocol) for entry in ports):
        return False
    # no peers: every source, in the cluster or outside it
    return not peers or any(_peer_matches(peer, policy_namespace, source) for peer in peers)


def admits(policies: list[dict[str, Any]], target: Pod, port: int, source: Pod | None,
           protocol: str = "TCP") -> bool:
    """Whether `source` may open a connection to `target` on `port`: a pod no policy selects for
    ingress takes anything; otherwise some rule of a policy selecting it must let the source in."""
    governing = [
        p for p in policies
        if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == target.namespace
        and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
        and selects(p["spec"]["podSelector"], target.labels)
    ]
    if not governing:
        return True
    return any(_rule_admits(rule, p["metadata"]["namespace"], source, port, protocol)
               for p in governing for rule in p["spec"].get("ingress") or [])
