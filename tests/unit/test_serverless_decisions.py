"""Serverless decisions without NATS or an engine: when a cluster hibernates, how a wake and
activity change its record, what the gateway does with a request, and how the meter counts."""

from datetime import timedelta

import elastic_transport
import pytest

from libs.common.api_keys import Principal
from libs.common.models import ClusterStatus, EngineCredentials, queued_reason, utcnow
from libs.common.metrics import ClusterStats
from services.gateway.routing import (
    Forward, Hold, Refuse, basic_credentials, decide, engine_user, hold_deadline, split_path,
)
from services.manager.drivers import flush_and_measure
from services.manager.planning import EngineObservation, Step
from services.manager.provisioner import QUEUED_POLL_S, settle_pause
from services.manager.transitions import NotNow, note_activity, request_hibernation, request_wake
from services.reporting.metering import add_activity, close_period, meter_storage_only
from tests.unit.test_planning import SIZE, plan, record

RUNNING = EngineObservation(True, SIZE, "green", 1, "http://127.0.0.1:19201")
TENANT = Principal("k1", "acme")


def ready(**fields):
    now = utcnow()
    return record(ClusterStatus.READY, observed_generation=1, formed_at=now - timedelta(hours=1), **fields)


def test_an_idle_cluster_hibernates_after_its_idle_time_and_not_before():
    idle = ready(hibernate_after_s=60, last_active_at=utcnow() - timedelta(seconds=61))
    assert plan(idle, RUNNING).step == Step.HIBERNATE
    busy = ready(hibernate_after_s=60, last_active_at=utcnow() - timedelta(seconds=30))
    assert plan(busy, RUNNING).step == Step.NOTHING
    never = ready(hibernate_after_s=0, last_active_at=utcnow() - timedelta(days=3))
    assert plan(never, RUNNING).step == Step.NOTHING


def test_asked_to_hibernate_stops_then_marks_then_rests():
    asked = request_hibernation(ready(), "asked")
    assert (asked.status, asked.hibernate_requested) == (ClusterStatus.HIBERNATING, True)
    assert plan(asked, RUNNING).step == Step.HIBERNATE
    stopped = plan(asked, EngineObservation(running=False))
    assert (stopped.step, stopped.status) == (Step.MARK_HIBERNATED, ClusterStatus.HIBERNATED)
    asleep = record(ClusterStatus.HIBERNATED, hibernate_requested=True, observed_generation=1, formed_at=utcnow())
    assert plan(asleep, EngineObservation(running=False)).step == Step.NOTHING


def test_a_woken_cluster_starts_as_waking_and_becomes_ready_when_healthy():
    woken = record(ClusterStatus.WAKING, observed_generation=1, formed_at=utcnow())
    start = plan(woken, EngineObservation(running=False))
    assert (start.step, start.status) == (Step.START, ClusterStatus.WAKING)
    assert plan(woken, RUNNING).status == ClusterStatus.READY


def test_a_delete_wins_over_hibernation():
    assert plan(ready(hibernate_requested=True, delete_requested=True), RUNNING).step == Step.REMOVE


def test_wake_clears_the_request_once_and_refuses_a_deleting_cluster():
    asleep = record(ClusterStatus.HIBERNATED, hibernate_requested=True)
    woken = request_wake(asleep, utcnow(), "a request")
    assert (woken.status, woken.hibernate_requested) == (ClusterStatus.WAKING, False)
    assert request_wake(woken, utcnow(), "again") is None  # a second wake changes nothing
    with pytest.raises(NotNow):
        request_wake(record(ClusterStatus.HIBERNATED, hibernate_requested=True, delete_requested=True), utcnow(), "x")


def test_a_wake_during_the_stop_lets_it_complete_then_starts_the_engine_as_a_wake_not_as_a_crash():
    stopping = request_wake(request_hibernation(ready(), "asked"), utcnow(), "a request while it stopped")
    assert (stopping.status, stopping.hibernate_requested) == (ClusterStatus.HIBERNATING, False)
    assert plan(stopping, RUNNING).step == Step.HIBERNATE  # decided once: not undone halfway
    held = decide(stopping, TENANT, "c1")
    assert isinstance(held, Hold) and not held.ask_to_wake  # woken already: only wait
    assert request_wake(stopping, utcnow(), "another request") is None
    start = plan(stopping, EngineObservation(running=False))
    assert (start.step, start.status) == (Step.START, ClusterStatus.WAKING)


def test_a_cluster_marked_by_an_older_manager_still_stops_and_wakes():
    marked = ready(hibernate_requested=True)  # before `hibernating` existed: ready and asked
    assert plan(marked, RUNNING).step == Step.HIBERNATE
    woken = request_wake(marked, utcnow(), "a request")
    assert woken.status == ClusterStatus.WAKING
    start = plan(woken, EngineObservation(running=False))
    assert (start.step, start.status) == (Step.START, ClusterStatus.WAKING)


def test_hibernation_is_asked_of_a_ready_cluster_only_and_activity_only_moves_forward():
    with pytest.raises(NotNow):
        request_hibernation(record(ClusterStatus.PROVISIONING), "asked")
    asked = request_hibernation(ready(), "asked")
    assert asked.hibernate_requested and asked.asleep
    assert request_hibernation(asked, "again") is None
    now = utcnow()
    assert note_activity(ready(last_active_at=now), now - timedelta(seconds=5)) is None  # a late report
    assert note_activity(ready(last_active_at=now), now + timedelta(seconds=5)).last_active_at > now


def test_paths_address_a_cluster_by_its_first_segment():
    assert split_path("/c0123456789ab/books/_search?q=x") == ("c0123456789ab", "/books/_search?q=x")
    assert split_path("/c0123456789ab") == ("c0123456789ab", "/")
    assert split_path("/_cluster/health") is None and split_path("/c0123") is None


def test_the_gateway_forwards_holds_or_refuses():
    assert decide(ready(endpoint="http://e:1"), TENANT, "c1") == Forward("http://e:1")
    assert isinstance(decide(ready(endpoint="http://e:1", hibernate_requested=True), TENANT, "c1"), Hold)
    waking = decide(record(ClusterStatus.WAKING, endpoint="http://e:1"), TENANT, "c1")
    assert isinstance(waking, Hold) and not waking.ask_to_wake  # woken already: only wait
    other = decide(ready(endpoint="http://e:1"), Principal("k2", "globex"), "c1")
    absent = decide(None, Principal("k2", "globex"), "c1")
    assert isinstance(other, Refuse) and (other.status, other.kind) == (absent.status, absent.kind) == (
        404, "cluster_not_found")
    assert decide(ready(endpoint="http://e:1"), Principal("operator", None), "c1") == Forward("http://e:1")
    assert decide(ready(delete_requested=True), TENANT, "c1").status == 404
    assert decide(record(ClusterStatus.PROVISIONING), TENANT, "c1").retry_after_s


def test_a_held_request_gives_up_after_the_wake_timeout_counted_from_its_clusters_turn_to_start():
    """20 wakes at once on two cores: the last ones wait their turn longer than a wake takes."""
    waking = record(ClusterStatus.WAKING, status_reason="engine starting")
    queued = record(ClusterStatus.WAKING, status_reason=queued_reason("2 engines are starting on this machine"))
    arrived = 100.0
    first = arrived + 60
    assert hold_deadline(first, 130.0, arrived, waking, 60, 180) == first  # starting: the wake's own clock
    assert hold_deadline(first, 130.0, arrived, queued, 60, 180) == 190.0  # waiting its turn: 60 s from now
    assert hold_deadline(190.0, 150.0, arrived, waking, 60, 180) == 190.0  # its turn came at 130 at the latest
    assert hold_deadline(first, 250.0, arrived, queued, 60, 180) == 280.0  # never past 180 s in all
    assert hold_deadline(first, 130.0, arrived, queued, 60, 30) == first  # the cap never shortens a hold


def test_clusters_coming_up_at_once_share_the_look_again_budget():
    assert settle_pause(0.05, False, 1) == 0.05  # one wake: looked at every 50 ms
    assert settle_pause(0.05, False, 4) == pytest.approx(0.2)  # four: each every 200 ms
    assert settle_pause(0.05, False, 40) == QUEUED_POLL_S  # never slower than a queued start
    assert settle_pause(0.05, True, 1) == QUEUED_POLL_S


def test_basic_auth_matches_the_clusters_own_engine_credentials_only():
    secured = ready(credentials=EngineCredentials(username="elastic", password="s3cret"))
    assert basic_credentials("Basic ZWxhc3RpYzpzM2NyZXQ=") == ("elastic", "s3cret")
    assert engine_user(secured, ("elastic", "s3cret")).tenant_org_id == "acme"
    assert engine_user(secured, ("elastic", "wrong")) is None
    assert engine_user(ready(), ("elastic", "s3cret")) is None  # local engines have none
    assert basic_credentials("Basic !!!") is None


def test_gateway_counts_go_into_the_open_period_and_a_sleeping_cluster_pays_storage_only():
    meter = add_activity(None, "c1", "acme", requests=3, bytes_in=100, bytes_out=900, at=3600.0, period_s=3600)
    meter = add_activity(meter, "c1", "acme", requests=2, bytes_in=10, bytes_out=90, at=3700.0, period_s=3600)
    meter, closed = meter_storage_only(meter, "c1", "acme", 10**9, 3800.0, 3600, 1e9)  # the baseline
    meter, closed = meter_storage_only(meter, "c1", "acme", 10**9, 7200.0, 3600, 1e9)
    assert closed is not None
    assert (closed.requests, closed.bytes_in, closed.bytes_out) == (5, 110, 990)
    assert closed.node_hours == 0 and closed.storage_gb_hours == pytest.approx(3400 / 3600)
    assert close_period(meter, 3600).requests == 0  # the next period starts from nothing


def test_a_gateway_batch_delivered_again_counts_once_also_across_a_period_end():
    meter = add_activity(None, "c1", "acme", requests=3, bytes_in=1, bytes_out=1, at=3600.0, period_s=3600,
                         batch_id="b1")
    meter = add_activity(meter, "c1", "acme", requests=3, bytes_in=1, bytes_out=1, at=3600.0, period_s=3600,
                         batch_id="b1")  # a replica died before its ack: the batch comes again
    assert meter.requests == 3
    meter, _ = meter_storage_only(meter, "c1", "acme", 0, 3800.0, 3600, 1e9)
    meter, closed = meter_storage_only(meter, "c1", "acme", 0, 7300.0, 3600, 1e9)
    assert closed.requests == 3
    meter = add_activity(meter, "c1", "acme", requests=3, bytes_in=1, bytes_out=1, at=7300.0, period_s=3600,
                         batch_id="b1")
    assert meter.requests == 0  # the new period remembers the batches of the one before


class StoppingEngine:
    """An engine for the flush before a hibernation: answering, or already on its way down."""

    def __init__(self, answers: bool):
        self.answers, self.flushed, self.closed = answers, 0, False

    def admin(self):
        return self

    async def flush(self) -> None:
        if not self.answers:
            raise elastic_transport.ConnectionError("Cannot connect to host", errors=(OSError(111, "refused"),))
        self.flushed += 1

    async def stats(self) -> ClusterStats:
        return ClusterStats(health="green", nodes=1, docs=1200, store_bytes=5_000_000)

    async def close(self) -> None:
        self.closed = True


async def test_the_flush_before_a_stop_reads_the_size_or_says_it_is_unknown_never_zero():
    answering, stopping = StoppingEngine(answers=True), StoppingEngine(answers=False)
    assert await flush_and_measure(answering) == (1200, 5_000_000) and answering.flushed == 1
    # a second pass at an engine already going down must not wipe the size the first one read
    assert await flush_and_measure(stopping) is None
    assert answering.closed and stopping.closed
