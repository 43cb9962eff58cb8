"""Whether a tenant may make a call on its cluster's engine: a pure decision, deny by default.

The decision is made on the path as the engine will route it, and the gateway forwards exactly
that path: segments split on `/` before percent-decoding (as the engines' path tries do), empty
segments and a trailing slash dropped, `.`/`..` and malformed escapes refused with 400. What the
engine would route by a literal (`_snapshot`) is compared decoded, so `%5Fsnapshot` is read as
`_snapshot` too. Routes are in `api_rules.py`; where a route's body can carry what the platform
owns (index allocation settings, a remote reindex source), the body is read here, strictly: a
body the policy cannot read unambiguously is refused, never forwarded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_to_bytes

from services.gateway.api_rules import (ALLOWED, ANY, IDX, PLATFORM_SETTINGS, REFUSAL_REASONS, Allowed,
                                        BodyCheck)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})
MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_CHECKED_BODY = 8 << 20  # a body checked for settings (inflated): larger is refused, not read on
JSON_TYPES = ("application/json", "application/vnd.elasticsearch+json", "application/vnd.opensearch+json")
UNWRAPPED = frozenset({"settings", "template"})  # wrappers around index settings in create/template bodies


@dataclass(frozen=True)
class Allow:
    path: str  # the engine path to forward: normalised, with the query
    check: BodyCheck | None = None  # read the body and ask `check_body` before forwarding
    read: bool = False  # changes nothing: may be sent again (see `retries.py`)


@dataclass(frozen=True)
class Deny:
    status: int  # 410: not a tenant's API; 400: the policy cannot read the request
    kind: str
    reason: str


def not_available(method: str, path: str, reason: str) -> Deny:
    return Deny(410, "api_not_available_exception", f"{method} {path} is not available on a tenant's endpoint: "
                f"{reason}")


def unreadable(reason: str) -> Deny:
    return Deny(400, "illegal_argument_exception", f"{reason}; the gateway forwards only what it can read "
                "unambiguously")


def _decode(segment: str) -> str | None:
    if "%" not in segment:  # the common case, without a regex or a byte round trip
        return segment if segment.isprintable() else None
    if MALFORMED_ESCAPE.search(segment):
        return None
    try:
        decoded = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if decoded.isprintable() else None


def normalise(engine_path: str) -> tuple[tuple[str, ...], str, str] | Deny:
    """(decoded segments, the path to forward, query) of an engine path, or why it is unreadable."""
    path, _, query = engine_path.partition("?")
    raw = [part for part in path.split("/") if part]
    segments = []
    for part in raw:
        decoded = _decode(part)
        if decoded is None:
            return unreadable(f"the path segment {part!r} is not valid percent-encoded UTF-8")
        if decoded in (".", ".."):
            return unreadable(f"the path has a {decoded!r} segment")
        segments.append(decoded)
    forward = "/" + "/".join(raw) + (f"?{query}" if query else "")
    return tuple(segments), forward, query


def _is_index_expression(segment: str) -> bool:
    return not segment.startswith("_") or segment == "_all"


def _matches(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if len(pattern) != len(segments):
        return False
    for token, segment in zip(pattern, segments):
        if token == IDX:
            if not _is_index_expression(segment):
                return False
        elif token != ANY and token != segment:
            return False
    return True


def _rows_by_shape() -> dict[tuple[int, str], list[Allowed]]:
    """Rows by (length, first token): a request is compared with a handful of rows, not all."""
    shapes: dict[tuple[int, str], list[Allowed]] = {}
    for allowed in ALLOWED:
        first = allowed.pattern[0] if allowed.pattern else ""
        shapes.setdefault((len(allowed.pattern), first), []).append(allowed)
    return shapes


SHAPES = _rows_by_shape()


def decide(method: str, engine_path: str, engine: str) -> Allow | Deny:
    """May a tenant principal make this call on a cluster of `engine`? (Not the operator's: it passes.)"""
    if method not in METHODS:
        return unreadable(f"the method {method!r} is not one of the engine's ({', '.join(sorted(METHODS))})")
    normalised = normalise(engine_path)
    if isinstance(normalised, Deny):
        return normalised
    segments, forward, query = normalised
    routed = "GET" if method == "HEAD" else method
    first = segments[0] if segments else ""
    candidates = SHAPES.get((len(segments), first), [])
    if segments and _is_index_expression(first):
        candidates = candidates + SHAPES.get((len(segments), IDX), [])
    for allowed in candidates:
        if routed in allowed.methods and engine in allowed.engines and _matches(allowed.pattern, segments):
            check = next((what for methods, what in allowed.checks if routed in methods), None)
            if check is not None and _has_source_param(query):
                return unreadable("send the body as the request's body, not as the `source` query parameter")
            return Allow(forward, check, routed in allowed.reads)
    shown = "/" + "/".join(segments)
    reason = REFUSAL_REASONS.get("/".join(segments[:2])) or REFUSAL_REASONS.get(first)
    return not_available(method, shown, reason or "this platform runs the cluster's nodes, snapshots and "
                         "cluster settings itself; a tenant's endpoint serves documents, search, indices, "
                         "mappings, aliases, templates and pipelines (see the README's table)")


PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # the byte pump's `*`: an index name or document id
WILD = "*"


def _could_match(pattern: tuple[str, ...], shape: tuple[str, ...]) -> bool:
    """Could a row match some path of `shape` (a `*` being any plain segment)?"""
    return all(token in (IDX, ANY) or (token == part if part != WILD else PLAIN.fullmatch(token) is not None)
               for token, part in zip(pattern, shape))


def shape_of(method: str, engine_path: str, engine: str) -> str | None:
    """The paths that get this call's verdict, for the byte pump to recognise: `METHOD /a/*/c`, each
    `*` standing for any plain segment. Only for a call allowed with no body to read and forwarded
    unchanged, and only where every row that a path of the shape could match reads no body either
    (so every path of it is allowed just the same). ` read` after it: a call that changes nothing,
    which the pump may send again as the gateway does. None: this call is decided each time."""
    verdict = decide(method, engine_path, engine)
    path = engine_path.partition("?")[0]
    if not isinstance(verdict, Allow) or verdict.check is not None or verdict.path.partition("?")[0] != path:
        return None
    segments = tuple(path.split("/")[1:]) if path != "/" else ()
    if any("%" in part or WILD in part for part in segments):
        return None  # compared as bytes by the pump: only plain spellings
    routed = "GET" if method == "HEAD" else method
    rows = [a for a in ALLOWED if len(a.pattern) == len(segments) and engine in a.engines and routed in a.methods]
    matched = next(a for a in rows if _matches(a.pattern, segments))
    shape = tuple(WILD if token in (IDX, ANY) and PLAIN.fullmatch(part) else part
                  for token, part in zip(matched.pattern, segments))
    for row in rows:
        if _could_match(row.pattern, shape) and any(routed in methods for methods, _ in row.checks):
            return None
    return f"{method} /{'/'.join(shape)}" + (" read" if verdict.read else "")


def is_read(method: str, engine_path: str, engine: str) -> bool:
    """A call a tenant may make that changes nothing (the operator's calls are read by it too)."""
    verdict = decide(method, engine_path, engine)
    return isinstance(verdict, Allow) and verdict.read


def _has_source_param(query: str) -> bool:
    return any(name == "source" for name, _ in parse_qsl(query, keep_blank_values=True))


# -- bodies --------------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("a key appears twice in one object")
    return dict(pairs)


def read_json(body: bytes, content_type: str | None) -> dict | Deny:
    """The body as one JSON object, read as strictly as the engines read it (no duplicate keys).

    A gzip or deflate body arrives here inflated (the HTTP server does it, chunk by chunk, and the
    gateway stops reading past `MAX_CHECKED_BODY`), so a compressed setting is read like a plain one.
    """
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        return unreadable(f"this call's body must be JSON (Content-Type application/json), not {media!r}")
    if not body.strip():
        return {}
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        return unreadable(f"the body is not plain JSON ({exc})")
    return value if isinstance(value, dict) else unreadable("the body must be a JSON object")


def _leaf_keys(value: object, prefix: tuple[str, ...] = ()):
    """Every leaf of nested objects as its path of dotted parts: {"a.b": {"c": 1}} -> ("a", "b", "c")."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _leaf_keys(inner, prefix + tuple(str(key).split(".")))
    else:
        yield prefix


def platform_setting(parts: tuple[str, ...]) -> str | None:
    """The index setting a leaf names, if it is one the platform owns (with or without `index.`)."""
    while parts and parts[0] in UNWRAPPED:
        parts = parts[1:]
    if not parts or parts[0] in ("mappings", "aliases", "index_patterns", "composed_of", "conditions"):
        return None
    name = ".".join(parts if parts[0] == "index" else ("index", *parts))
    return name if any(name == p or name.startswith(p + ".") for p in PLATFORM_SETTINGS) else None


def check_body(check: BodyCheck, method: str, path: str, body: dict) -> Deny | None:
    """None when the body may go on; else why not."""
    if check is BodyCheck.REINDEX:
        source = body.get("source")
        if isinstance(source, dict) and "remote" in source:
            return not_available(method, path, "a reindex from a remote cluster; reindex within the cluster, "
                                 "or restore another cluster's snapshot with POST /clusters/{id}/restore")
        return None
    for parts in _leaf_keys(body):
        name = platform_setting(parts)
        if name:
            return not_available(method, path, f"the index setting {name} is the platform's (it places shards "
                                 "on nodes when it scales and drains); leave it out")
    return None
