"""Which engine answers to a read the gateway sends again (services/gateway/retries.py): only a
failure of the cluster's own topology (a copy or node gone under the search), never the tenant's
mistake, an engine fault of another kind, a write, or a scroll. The byte pump's Go test reads the
same vectors, so the two decide alike."""

from __future__ import annotations

import json

import pytest

from services.gateway.api_policy import is_read
from services.gateway.pump_link import SOURCE
from services.gateway.retries import TRANSIENT_ERRORS, may_send_again, pump_args, transient_failure

VECTORS = json.loads((SOURCE / "testdata" / "engine_answers.json").read_text())["answers"]


def as_sent(body) -> bytes:
    return body.encode() if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["why"] for v in VECTORS])
def test_only_a_transient_failure_is_sent_again(vector):
    assert transient_failure(vector["status"], None, as_sent(vector["body"])) == (vector["transient"] or None)


def test_a_compressed_answer_is_passed_on_unread():
    gone = next(v for v in VECTORS if v["transient"] == "node_not_connected_exception")
    assert transient_failure(500, "gzip", as_sent(gone["body"])) is None


@pytest.mark.parametrize("method,path,read", [
    ("GET", "/books/_doc/1", True), ("HEAD", "/books/_doc/1", True), ("POST", "/books/_search", True),
    ("GET", "/books/_search", True), ("POST", "/_msearch", True), ("POST", "/books/_count", True),
    ("POST", "/_mget", True), ("PUT", "/books/_doc/1", False), ("POST", "/books/_doc", False),
    ("POST", "/_bulk", False), ("DELETE", "/books/_doc/1", False), ("POST", "/books/_update_by_query", False),
    ("POST", "/_search/scroll", False), ("GET", "/_search/scroll/abc", False),  # a scroll moves on each call
    ("GET", "/_snapshot", False),  # not a tenant's call at all
])
def test_reads_are_the_calls_that_change_nothing(method, path, read):
    assert is_read(method, path, "opensearch") is read


def test_the_pump_is_started_with_the_same_terms():
    errors, pauses = pump_args()
    assert set(errors.removeprefix("-retry-errors=").split(",")) == TRANSIENT_ERRORS
    assert {v["transient"] for v in VECTORS} - {""} <= TRANSIENT_ERRORS
    assert pauses.startswith("-retry-pauses=100ms,")


SCROLLS = json.loads((SOURCE / "testdata" / "scroll_queries.json").read_text())["queries"]


@pytest.mark.parametrize("vector", SCROLLS, ids=[v["query"] or "(none)" for v in SCROLLS])
def test_a_search_that_opens_a_scroll_is_not_sent_again(vector):
    assert may_send_again(True, vector["query"]) is not vector["opens"]
    assert may_send_again(False, vector["query"]) is False  # a write never
