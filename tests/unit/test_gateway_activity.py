"""The gateway's activity book: what it served itself and what its byte pump reported are counted
alike, once each, and a cluster with calls still in the pump counts as active."""

from __future__ import annotations

from services.gateway.activity import Activity


def test_the_pumps_counts_add_to_the_gateways_own_once_each():
    activity = Activity(gateway="g")
    activity.started("c1", "t1")
    activity.finished("c1", "t1", 10, 100)
    activity.pumped([{"cluster": "c1", "tenant": "t1", "requests": 30, "bytes_in": 0, "bytes_out": 3000,
                      "in_flight": 0}])
    [report] = activity.take()
    assert (report.requests, report.bytes_in, report.bytes_out) == (31, 10, 3100)
    assert activity.totals["c1"].requests == 31
    assert activity.take() == []  # counted once: the next flush has nothing


def test_a_cluster_with_calls_in_the_pump_counts_as_active_until_a_flush():
    activity = Activity(gateway="g")
    activity.pumped([{"cluster": "c2", "tenant": "t2", "requests": 0, "in_flight": 2}])
    [report] = activity.take()
    assert (report.cluster_id, report.requests) == ("c2", 0) and report.last_request_at is not None
    assert activity.take() == []  # the next report of the pump says again if it still is


def test_reads_sent_again_by_the_pump_add_to_the_gateways_own_count():
    activity = Activity(gateway="g")
    activity.reads_sent_again += 1  # one of the gateway's own
    activity.pumped([{"cluster": "c1", "tenant": "t1", "requests": 0, "in_flight": 0, "sent_again": 2}])
    assert activity.reads_sent_again == 3
    assert activity.take() == []  # a retry alone is no request to meter
