"""The tenant API policy without a gateway or an engine: what a tenant's endpoint passes, what it
refuses (410) and what it cannot read (400), on both engines and in every spelling an attacker tries."""

from __future__ import annotations

import pytest

from services.gateway.api_policy import Allow, Deny, check_body, decide, read_json
from services.gateway.api_rules import BodyCheck
from services.gateway.key_guard import KeyGuard, Throttled

ENGINES = ("opensearch", "elasticsearch")

APPLICATION_CALLS = [  # what applications and the official clients' helpers send
    ("GET", "/"), ("HEAD", "/"), ("GET", "/_cluster/health"), ("GET", "/_cluster/health/books?wait_for_status=yellow"),
    ("PUT", "/books"), ("GET", "/books"), ("HEAD", "/books"), ("DELETE", "/books"), ("DELETE", "/logs-*"),
    ("POST", "/_bulk"), ("PUT", "/books/_bulk"), ("POST", "/books/_doc"), ("PUT", "/books/_doc/1"),
    ("GET", "/books/_doc/1"), ("HEAD", "/books/_doc/1"), ("DELETE", "/books/_doc/1"), ("POST", "/books/_update/1"),
    ("PUT", "/books/_create/1"), ("GET", "/books/_source/1"), ("POST", "/_mget"), ("GET", "/books/_mget"),
    ("POST", "/books/_search?scroll=1m"), ("POST", "/_search/scroll"), ("DELETE", "/_search/scroll"),
    ("GET", "/books,films/_search"), ("GET", "/_all/_count"), ("POST", "/_msearch"), ("GET", "/books/_count"),
    ("GET", "/books/_field_caps?fields=*"), ("GET", "/books/_explain/1"), ("POST", "/books/_validate/query"),
    ("POST", "/_analyze"), ("POST", "/books/_update_by_query?conflicts=proceed"),
    ("POST", "/books/_delete_by_query"), ("POST", "/_reindex"), ("GET", "/_tasks/abc:12"),
    ("POST", "/_tasks/abc:12/_cancel"), ("GET", "/books/_mapping"), ("PUT", "/books/_mapping"),
    ("PUT", "/books/_settings"), ("GET", "/books/_settings"), ("POST", "/_aliases"), ("GET", "/_alias/latest"),
    ("PUT", "/books/_alias/latest"), ("DELETE", "/books/_alias/latest"), ("PUT", "/_index_template/logs"),
    ("PUT", "/_component_template/base"), ("PUT", "/_template/old"), ("PUT", "/_ingest/pipeline/clean"),
    ("POST", "/_ingest/pipeline/clean/_simulate"), ("POST", "/books/_refresh"), ("POST", "/_flush"),
    ("GET", "/_cat/indices?format=json&bytes=b&s=index"), ("GET", "/_cat/aliases?format=json"),
    ("GET", "/_cat/count/books"), ("GET", "/_cat/health"), ("POST", "/books/_open"),
    ("GET", "/%3Clogs-%7Bnow%2Fd%7D%3E/_search"),  # date math: a '/' inside one encoded segment
    ("GET", "/books/"), ("GET", "//books//_search"),
]

PLATFORM_CALLS = [  # the platform's controls, and other tenants' backups
    ("PUT", "/_snapshot/x"), ("POST", "/_snapshot/x"), ("GET", "/_snapshot"), ("GET", "/_snapshot/x/_all"),
    ("POST", "/_snapshot/x/s1/_restore"), ("DELETE", "/_snapshot/x/s1"), ("POST", "/_snapshot/x/_verify"),
    ("GET", "/_nodes"), ("GET", "/_nodes/settings"), ("GET", "/_nodes/stats"), ("POST", "/_nodes/reload_secure_settings"),
    ("PUT", "/_cluster/settings"), ("GET", "/_cluster/settings"), ("GET", "/_cluster/state"),
    ("POST", "/_cluster/voting_config_exclusions?node_names=Node%202"), ("DELETE", "/_cluster/voting_config_exclusions"),
    ("POST", "/_cluster/reroute"), ("GET", "/_cluster/allocation/explain"), ("GET", "/_cat/nodes"),
    ("GET", "/_cat/allocation"), ("GET", "/_cat/nodeattrs"), ("GET", "/_cat/repositories"), ("GET", "/_cat/snapshots/x"),
    ("GET", "/_cat/master"), ("GET", "/_cat/cluster_manager"), ("GET", "/_cat/plugins"), ("GET", "/_cat/shards"),
    ("PUT", "/_scripts/s"), ("GET", "/_slm/policy"), ("PUT", "/_ilm/policy/p"), ("POST", "/_remotestore/_restore"),
    ("GET", "/_security/user"), ("GET", "/_plugins/_security/api/account"), ("GET", "/_plugins/_knn/stats"),
    ("GET", "/_tasks"), ("POST", "/books/_forcemerge"), ("GET", "/books/_recovery"), ("POST", "/books/_shrink/small"),
]

SPELLINGS = [  # other ways to write `/_snapshot/x` and `/_cluster/settings`
    "/%5Fsnapshot/x", "/%5fsnapshot/x", "//_snapshot//x", "/_snapshot/x/", "/_snapshot/x?pretty",
    "/_snapshot/x?source=%7B%7D", "/_cluster/settings/", "/_cluster//settings", "/%5F%63luster/settings",
    "/_cluster/settings?flat_settings=true",
]
UNREADABLE = ["/books/../_snapshot/x", "/./_snapshot/x", "/%2e%2e/_cluster/settings", "/%2E/_nodes",
              "/_snapshot%zz/x", "/%ff/_search", "/books%00/_doc/1"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("method", "path"), APPLICATION_CALLS)
def test_what_applications_call_passes(engine, method, path):
    assert isinstance(decide(method, path, engine), Allow), (method, path)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("method", "path"), PLATFORM_CALLS)
def test_the_platforms_controls_are_refused_with_410(engine, method, path):
    verdict = decide(method, path, engine)
    assert isinstance(verdict, Deny) and verdict.status == 410 and verdict.kind == "api_not_available_exception"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", SPELLINGS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
def test_no_spelling_reaches_them(engine, path, method):
    verdict = decide(method, path, engine)
    assert isinstance(verdict, Deny) and verdict.status in (400, 410), (method, path, verdict)


@pytest.mark.parametrize("path", UNREADABLE)
def test_what_the_policy_cannot_read_is_refused_with_400(path):
    verdict = decide("GET", path, "opensearch")
    assert isinstance(verdict, Deny) and verdict.status == 400, (path, verdict)


def test_unknown_methods_are_refused():
    assert decide("PATCH", "/books/_doc/1", "opensearch").status == 400
    assert decide("get", "/books/_search", "opensearch").status == 400


def test_refusals_name_the_platform_route_that_does_it():
    assert "POST /clusters/{id}/restore" in decide("POST", "/_snapshot/x/s/_restore", "opensearch").reason
    assert "PATCH /clusters/{id}" in decide("PUT", "/_cluster/settings", "elasticsearch").reason


def test_each_engine_has_its_own_point_in_time():
    assert isinstance(decide("POST", "/books/_pit?keep_alive=1m", "elasticsearch"), Allow)
    assert isinstance(decide("POST", "/books/_pit", "opensearch"), Deny)
    assert isinstance(decide("POST", "/books/_search/point_in_time?keep_alive=1m", "opensearch"), Allow)
    assert isinstance(decide("POST", "/books/_search/point_in_time", "elasticsearch"), Deny)
    assert isinstance(decide("GET", "/_plugins/_knn/warmup/books", "opensearch"), Allow)


def test_the_path_forwarded_is_the_path_decided():
    assert decide("GET", "//books//_search/?q=a", "opensearch").path == "/books/_search?q=a"
    assert decide("GET", "/%3Clogs-%7Bnow%2Fd%7D%3E/_search", "opensearch").path == "/%3Clogs-%7Bnow%2Fd%7D%3E/_search"


def test_settings_and_reindex_bodies_are_read():
    assert decide("PUT", "/books", "opensearch").check is BodyCheck.SETTINGS
    assert decide("GET", "/books", "opensearch").check is None
    assert decide("PUT", "/_index_template/t", "opensearch").check is BodyCheck.SETTINGS
    assert decide("POST", "/_reindex", "elasticsearch").check is BodyCheck.REINDEX
    # a body the check would read may not hide in the query
    assert decide("PUT", "/books/_settings?source=%7B%7D", "opensearch").status == 400


ALLOCATION = [
    {"settings": {"index.routing.allocation.require._name": "Node 1"}},
    {"settings": {"index": {"routing": {"allocation": {"exclude": {"_name": "Node 2"}}}}}},
    {"index.routing.allocation.enable": "none"},
    {"routing.allocation.total_shards_per_node": 1},  # the engines add `index.` themselves
    {"index": {"routing.rebalance.enable": "none"}},
    {"settings": {"index": {"routing.allocation.include._tier": None}}},
    {"template": {"settings": {"index.routing.allocation.require._name": "x"}}},  # composable template
    {"index_patterns": ["*"], "settings": {"number_of_shards": 1, "routing": {"allocation": {"require": {"a": "b"}}}}},
    {"settings": {"index.data_path": "/tmp/elsewhere"}},
]


@pytest.mark.parametrize("body", ALLOCATION)
def test_index_settings_the_platform_relies_on_are_refused_in_any_shape(body):
    refusal = check_body(BodyCheck.SETTINGS, "PUT", "/books", body)
    assert refusal is not None and refusal.status == 410 and "index." in refusal.reason


def test_index_level_settings_of_the_tenants_own_pass():
    body = {"settings": {"number_of_shards": 2, "index": {"knn": True, "refresh_interval": "5s"},
                         "analysis": {"analyzer": {"a": {"type": "standard"}}}},
            "mappings": {"properties": {"routing": {"type": "keyword"}}}, "aliases": {"latest": {"routing": "1"}}}
    assert check_body(BodyCheck.SETTINGS, "PUT", "/books", body) is None


def test_a_reindex_from_a_remote_cluster_is_refused_and_a_local_one_passes():
    remote = {"source": {"remote": {"host": "http://10.0.0.1:9200"}, "index": "a"}, "dest": {"index": "b"}}
    assert check_body(BodyCheck.REINDEX, "POST", "/_reindex", remote).status == 410
    assert check_body(BodyCheck.REINDEX, "POST", "/_reindex", {"source": {"index": "a"}, "dest": {"index": "b"}}) is None


def test_bodies_are_read_as_strictly_as_the_engines_read_them():
    hidden = b'{"settings": {"index.routing.allocation.require._name": "x"}, "settings": {}}'
    assert read_json(hidden, "application/json").status == 400  # a duplicate key
    assert read_json(b'{"settings": {/* c */}}', "application/json").status == 400
    assert read_json(b"settings:\n  index.routing.allocation.enable: none\n", "application/yaml").status == 400
    assert read_json(b"\x00\x01", "application/cbor").status == 400
    assert read_json(b"[]", "application/json").status == 400
    assert read_json(b"", None) == {}
    parsed = read_json(b'{"settings": {"index": {"routing.allocation.enable": "none"}}}', "application/json; charset=UTF-8")
    assert check_body(BodyCheck.SETTINGS, "PUT", "/books", parsed).status == 410


def test_a_flood_of_bad_keys_from_one_address_is_throttled_and_others_go_on():
    guard = KeyGuard(failures_per_minute=5, lookups_per_s=1000, refused_ttl_s=5)
    for n in range(5):
        assert guard.may_look_up("10.0.0.9", now=float(n)) is None
        guard.refused(f"bad{n}", now=float(n))
    throttled = guard.may_look_up("10.0.0.9", now=6.0)
    assert isinstance(throttled, Throttled) and throttled.retry_after_s >= 1
    assert guard.may_look_up("10.0.0.1", now=6.0) is None  # another address is not held back
    assert guard.refused_recently("bad4", now=6.0) and not guard.refused_recently("bad4", now=10.0)
    assert guard.may_look_up("10.0.0.9", now=61.0) is None  # the minute is over


def test_good_keys_are_not_held_against_their_address():
    guard = KeyGuard(failures_per_minute=2, lookups_per_s=1000, refused_ttl_s=5)
    for n in range(10):
        assert guard.may_look_up("10.0.0.1", now=float(n)) is None
        guard.accepted(f"good{n}", "10.0.0.1")


def test_many_addresses_together_share_a_lookup_budget():
    guard = KeyGuard(failures_per_minute=100, lookups_per_s=10, refused_ttl_s=5)
    answers = [guard.may_look_up(f"10.1.{n // 250}.{n % 250}", now=100.0) for n in range(50)]
    assert sum(a is None for a in answers) == 10
    assert guard.may_look_up("10.9.9.9", now=101.0) is None  # refilled a second later
