"""Polling: one loop per ready cluster, each with its own timeout, so a slow or dead
cluster never holds up the others. Each sample becomes a MetricsSample event, the latest
sample feeds /metrics, and every sample is metered into the cluster's open usage period.
A hibernated cluster is not polled (no engine runs): its kept store is metered instead, and
the gateway's request counts are added to the open period as they come.

With several reporting replicas each cluster is polled by the holder of its lease only (one
sample per interval, as with one replica), and a meter changes only if nobody wrote it since
it was read (a replica's poll and another's gateway counts would otherwise lose one of them).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.engines import ENGINE_NO_ANSWER, SearchEngine, connect_engine
from libs.common.events import ClusterActivity, MetricsSample, UsageRecord
from libs.common.failures import NATS_FAILURES
from libs.common.kv import all_keys, read_model
from libs.common.leases import Leases
from libs.common.metrics import ClusterStats, OperationTotals
from libs.common.models import ClusterRecord, utcnow
from libs.common.quantities import parse_bytes
from libs.common.settings import ReportingSection
from services.reporting.exposition import ServiceMetrics
from services.reporting.metering import UsageMeter, add_activity, close_period, meter_sample, meter_storage_only
from services.reporting.rates import derive_load, derive_rates

# the declared publishers (`handlers.py`): each event to its cluster's subject
PublishSample = Callable[[MetricsSample], Awaitable[None]]
PublishUsage = Callable[[UsageRecord], Awaitable[None]]


class UsageMeters:
    """Open usage periods in KV, so a restart of reporting neither loses nor repeats usage."""

    def __init__(self, kv: KeyValue):
        self._kv = kv

    async def get(self, cluster_id: str) -> UsageMeter | None:
        return await read_model(self._kv, cluster_id, UsageMeter)

    async def change(self, cluster_id: str, fold: Callable[[UsageMeter | None], Awaitable[UsageMeter]]) -> None:
        """Read the meter, fold into it, and write it back only if nobody wrote it meanwhile (then
        read and fold again): two replicas' changes both count, neither twice."""
        while True:
            try:
                entry = await self._kv.get(cluster_id)
                current, revision = UsageMeter.model_validate_json(entry.value), entry.revision
            except KeyNotFoundError as exc:  # none, or a deleted one (its marker's revision)
                current, revision = None, exc.entry.revision if exc.entry else 0
            meter = await fold(current)
            try:
                await self._kv.update(cluster_id, meter.model_dump_json().encode(), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue

    async def delete(self, cluster_id: str) -> None:
        await self._kv.delete(cluster_id)

    async def all(self) -> list[UsageMeter]:
        return [m for m in [await self.get(k) for k in await all_keys(self._kv)] if m]


class Poller:
    def __init__(self, settings: ReportingSection, publish_sample: PublishSample, publish_usage: PublishUsage,
                 meters: UsageMeters, metrics: ServiceMetrics,
                 engine_for: Callable[[ClusterRecord], SearchEngine] | None = None, leases: Leases | None = None):
        self._settings = settings
        self._leases = leases  # None: the only replica, polling every cluster
        self._send_sample = publish_sample
        self._send_usage = publish_usage
        self._meters = meters
        self._metrics = metrics
        self._engine_for = engine_for or (lambda r: connect_engine(r.spec.engine, r.endpoint))
        self._tasks: dict[str, asyncio.Task] = {}
        self._records: dict[str, ClusterRecord] = {}
        self._meter_locks: dict[str, asyncio.Lock] = {}  # the poll loop and activity both update a meter
        self.latest: dict[str, MetricsSample] = {}
        self.up: dict[str, tuple[str, bool]] = {}
        self._log = structlog.get_logger("poller")

    @property
    def tracked(self) -> dict[str, ClusterRecord]:
        """The records of the clusters polled now (a live view: /metrics reads their backups)."""
        return self._records

    @property
    def max_gap_s(self) -> float:
        return 3 * self._settings.poll_interval_s

    # -- which clusters to poll -----------------------------------------------------------
    def track(self, record: ClusterRecord) -> None:
        """A record was written: poll it once it has been ready, until it is deleted.

        A cluster whose engine died stays polled, so it shows as down rather than vanishing.
        """
        wanted = bool(record.endpoint) and record.observed_generation > 0 and not record.delete_requested
        current = self._records.get(record.id)
        running = record.id in self._tasks and not self._tasks[record.id].done()
        if wanted and current and (current.endpoint, current.asleep) == (record.endpoint, record.asleep) and running:
            self._records[record.id] = record
            return
        self.forget(record.id)
        if wanted:
            self._records[record.id] = record
            loop = self._storage_loop(record) if record.asleep else self._poll_loop(record)
            self._tasks[record.id] = task = asyncio.create_task(loop)
            task.add_done_callback(lambda done, cluster_id=record.id: self._ended(cluster_id, done))

    def _ended(self, cluster_id: str, task: asyncio.Task) -> None:
        # a loop ends only when cancelled; anything else is a bug, said loudly (the task is kept,
        # so asyncio would never report it), and the next write of the record starts it again
        if not task.cancelled() and task.exception() is not None:
            self._log.error("polling loop crashed", cluster=cluster_id, exc_info=task.exception())

    def forget(self, cluster_id: str) -> None:
        task = self._tasks.pop(cluster_id, None)
        if task:
            task.cancel()
        self._records.pop(cluster_id, None)
        self.latest.pop(cluster_id, None)
        self.up.pop(cluster_id, None)

    async def stop(self) -> None:
        for cluster_id in list(self._tasks):
            self.forget(cluster_id)

    # -- one cluster's loop ---------------------------------------------------------------
    async def _storage_loop(self, record: ClusterRecord) -> None:
        """A hibernated cluster: bill its kept store each interval, with no node."""
        while True:
            await asyncio.sleep(self._settings.poll_interval_s)
            current = self._records.get(record.id, record)

            async def fold(meter: UsageMeter | None) -> UsageMeter:
                meter, closed = meter_storage_only(
                    meter, record.id, record.tenant_org_id, current.stored_bytes, time.time(),
                    self._settings.metering_period_s, self.max_gap_s)
                if closed:
                    await self._publish_usage(closed)
                return meter
            try:
                if not await self._holds(record.id):
                    continue
                async with self._meter_lock(record.id):
                    await self._meters.change(record.id, fold)
            except NATS_FAILURES as exc:  # NATS away: this interval is not billed, the loop goes on
                self._log.warning("storage not metered", cluster=record.id, error=type(exc).__name__)

    async def _poll_loop(self, record: ClusterRecord) -> None:
        engine = self._engine_for(record)
        interval = self._settings.poll_interval_s
        previous: tuple[ClusterStats, float] | None = None  # the last poll: rates and load since then
        index_previous: dict[str, tuple[OperationTotals, float]] = {}
        loop = asyncio.get_running_loop()
        # the first poll within a second, the second after a random half to whole interval: a fleet
        # tracked at once (reporting restarted) spreads over the interval instead of one burst
        next_at = loop.time() + random.uniform(0, min(interval, 1.0))
        step = random.uniform(interval / 2, interval)
        try:
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = max(next_at + step, loop.time())
                step = interval
                if not await self._holds(record.id):  # another replica polls it
                    previous = None
                    self.latest.pop(record.id, None)
                    self.up.pop(record.id, None)
                    continue
                sample = await self._poll_once(engine, record.id, previous, index_previous)
                if sample is None:
                    previous = None  # rates restart after a gap rather than spanning it
                    continue
                now = time.time()
                previous = (sample.stats, now)
                index_previous.update({i.name: (i, now) for i in sample.stats.per_index})
                try:
                    await self._send_sample(sample)
                    self._metrics.events_published.labels("metrics").inc()
                    await self._meter(sample, now)
                except NATS_FAILURES as exc:  # NATS busy or away: this sample is lost, polling goes on
                    self._metrics.poll_errors.labels(sample.tenant_org_id, record.id).inc()
                    self._log.warning("sample not published", cluster=record.id, error=type(exc).__name__)
        finally:
            await engine.close()

    async def _poll_once(self, engine: SearchEngine, cluster_id: str, previous, index_previous) -> MetricsSample | None:
        record = self._records.get(cluster_id)
        if record is None:
            return None
        taken_at = utcnow()
        started = time.perf_counter()
        try:
            stats = await asyncio.wait_for(engine.stats(), self._settings.poll_timeout_s)
        except ENGINE_NO_ANSWER as exc:  # the cluster shows as down until it answers
            self._metrics.poll_errors.labels(record.tenant_org_id, cluster_id).inc()
            self.up[cluster_id] = (record.tenant_org_id, False)
            self.latest.pop(cluster_id, None)  # no stale gauges for a cluster that does not answer
            self._log.warning("poll failed", cluster=cluster_id, tenant=record.tenant_org_id, error=type(exc).__name__)
            return None
        finally:
            self._metrics.poll_duration.observe(time.perf_counter() - started)
        now = time.time()
        rates = derive_rates(previous[0] if previous else None, stats, now - previous[1] if previous else 0)
        index_rates = {
            i.name: derive_rates(index_previous[i.name][0], i, now - index_previous[i.name][1])
            for i in stats.per_index if i.name in index_previous
        }
        load = derive_load(previous[0] if previous else None, stats)
        sample = MetricsSample(cluster_id=cluster_id, tenant_org_id=record.tenant_org_id, taken_at=taken_at,
                               stats=stats, rates=rates, load=load, index_rates=index_rates)
        self.latest[cluster_id] = sample
        self.up[cluster_id] = (record.tenant_org_id, True)
        return sample

    async def _holds(self, cluster_id: str) -> bool:
        if self._leases is None:
            return True
        try:
            return await self._leases.hold(cluster_id)
        except NATS_FAILURES:  # NATS away: nothing could be published either
            return False

    # -- metering -------------------------------------------------------------------------
    def _meter_lock(self, cluster_id: str) -> asyncio.Lock:
        return self._meter_locks.setdefault(cluster_id, asyncio.Lock())

    async def _meter(self, sample: MetricsSample, now: float) -> None:
        record = self._records.get(sample.cluster_id)
        if record is None:
            return
        async def fold(meter: UsageMeter | None) -> UsageMeter:
            meter, closed = meter_sample(
                meter, sample.cluster_id, sample.tenant_org_id, sample.stats, sample.taken_at.timestamp(),
                parse_bytes(record.spec.memory) / 2**30, self._settings.metering_period_s, self.max_gap_s,
            )
            if closed:  # the same id for the same period: a fold redone publishes nothing twice
                await self._publish_usage(closed)
            return meter
        async with self._meter_lock(sample.cluster_id):
            await self._meters.change(sample.cluster_id, fold)

    async def add_activity(self, event: ClusterActivity) -> None:
        """A gateway's request counts, into the cluster's open period."""
        async def fold(meter: UsageMeter | None) -> UsageMeter:
            return add_activity(meter, event.cluster_id, event.tenant_org_id, event.requests, event.bytes_in,
                                event.bytes_out, event.last_request_at.timestamp(), self._settings.metering_period_s,
                                event.event_id)
        async with self._meter_lock(event.cluster_id):
            await self._meters.change(event.cluster_id, fold)

    async def _publish_usage(self, usage: UsageRecord) -> None:
        await self._send_usage(usage)
        self._metrics.events_published.labels("usage").inc()
        self._log.info("usage recorded", cluster=usage.cluster_id, tenant=usage.tenant_org_id,
                       period_start=usage.period_start.isoformat(), documents=usage.documents_indexed)

    async def close_stale_periods(self) -> None:
        """Close periods of clusters no longer sampled (deleted, or down past the period's end)."""
        now = time.time()
        for meter in await self._meters.all():
            period_end = meter.period_start + self._settings.metering_period_s
            if now >= period_end + self.max_gap_s and meter.last_sample_at < period_end:
                await self._publish_usage(close_period(meter, self._settings.metering_period_s))
                await self._meters.delete(meter.cluster_id)
