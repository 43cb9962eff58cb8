"""The shapes the gateway hands its byte pump: a shape lets the pump carry every path of it
without asking, so each must get exactly the verdict of the call it was made from. Checked over
the whole route table, with plain segments an attacker would pick (the routes' own literals
among them), on both engines; and the pump's own tests (Go) run here too."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from services.gateway.api_policy import PLAIN, WILD, Allow, decide, shape_of
from services.gateway.api_rules import ALLOWED, ANY, IDX
from services.gateway.pump_link import SOURCE

ENGINES = ("opensearch", "elasticsearch")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
# what a `*` might be replaced with: ids, index names, and every plain literal of the table
LITERALS = sorted({token for row in ALLOWED for token in row.pattern if PLAIN.fullmatch(token)})
SUBSTITUTES = ["d42", "logs-2026.12.07", "x", "0", *LITERALS]


def sample_paths():
    """One path per row, with a plain index name and id where the row takes any."""
    for row in ALLOWED:
        parts = ["books" if token == IDX else "doc-1" if token == ANY else token for token in row.pattern]
        yield "/" + "/".join(parts)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_path_of_a_shape_gets_the_verdict_of_the_call_it_came_from(engine):
    shapes = 0
    for path in sample_paths():
        for method in METHODS:
            shape = shape_of(method, path, engine)
            if shape is None:
                continue
            shapes += 1
            verdict = decide(method, path, engine)
            assert isinstance(verdict, Allow) and verdict.check is None and verdict.path == path
            shape_method, pattern, *marks = shape.split(" ")
            assert shape_method == method
            assert marks == (["read"] if verdict.read else [])  # the pump sends again only what the gateway would
            parts = pattern.split("/")[1:] if pattern != "/" else []
            for substitute in SUBSTITUTES:
                variant = "/" + "/".join(substitute if part == WILD else part for part in parts)
                other = decide(method, variant, engine)
                assert isinstance(other, Allow) and other.check is None and other.path == variant, \
                    (method, path, shape, variant, other)
                assert other.read == verdict.read, (method, path, shape, variant)
    assert shapes > 40  # the common calls do get shapes


@pytest.mark.parametrize("method,path,shape", [
    ("GET", "/books/_doc/d42", "GET /*/_doc/* read"), ("GET", "/", "GET / read"), ("POST", "/_bulk", "POST /_bulk"),
    ("POST", "/books/_search?q=x", "POST /*/_search read"), ("GET", "/_cluster/health", "GET /_cluster/health read"),
    ("PUT", "/_ingest/pipeline/p1", "PUT /_ingest/pipeline/*"), ("DELETE", "/books/_doc/d42", "DELETE /*/_doc/*"),
    ("POST", "/_search/scroll", "POST /_search/scroll"),  # a scroll moves on with every call: never sent twice
    ("GET", "/books,films/_search", "GET /books,films/_search read"),  # not plain: compared literally
    # no shape: refused, a body the policy reads, or a spelling the pump compares only as bytes
    ("GET", "/_snapshot", None), ("PUT", "/books", None), ("PUT", "/books/_settings", None),
    ("POST", "/_reindex", None), ("GET", "/books/_doc/%41", None), ("GET", "/books//_doc/1", None),
    ("GET", "/books/_doc/1/", None), ("PUT", "/_index_template/t", None),
])
def test_shapes_of_common_calls(method, path, shape):
    assert shape_of(method, path, "opensearch") == shape


def test_the_policy_and_the_pump_agree_on_what_a_star_stands_for():
    vectors = json.loads((SOURCE / "testdata" / "plain_segments.json").read_text())  # Go's test reads it too
    assert [s for s in vectors["plain"] if not PLAIN.fullmatch(s)] == []
    assert [s for s in vectors["not_plain"] if PLAIN.fullmatch(s)] == []


def test_the_pumps_own_tests_pass():
    go = shutil.which("go")
    assert go, "Go is needed to build and test the gateway's byte pump (it builds the Kubernetes tools too)"
    result = subprocess.run([go, "test", "-count=1", "./..."], cwd=SOURCE, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
