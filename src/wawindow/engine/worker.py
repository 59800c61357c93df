"""``wawindow run worker``: the window engine's consumer loop and deadline sweeper.

A batch of ``webhook-events`` records is handled in this order:

1. decode each record; one that cannot be read goes to ``dead-letter`` with the reason;
2. link the ids that name one user (once per pair: engine/links.py), then apply every event
   to its conversation in Redis (each conversation atomically, one ``commit.lua`` call for
   the batch, which also drops the outbox entries the batch before published); an event
   whose write fails for it goes to ``dead-letter`` too, the others go on;
3. publish the batch's window transitions (and dead letters) and wait for Kafka's acks;
4. carry the published transitions' outbox entries to the next batch's write (or drop them
   at once when the worker is idle or stops);
5. commit the batch's offsets.

A crash anywhere before 5 delivers the batch again. Step 2 then changes nothing (every event
id is remembered) and returns the transitions still waiting in the outbox, so step 3 publishes
them again with the same ids: nothing is lost and nothing is counted twice.

The sweeper runs beside it: every quarter second it warns and closes the conversations whose
deadline has passed (on the wall clock, with the true ``closed_at``), and every few seconds it
re-publishes outbox entries that a dead process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from wawindow.contracts import CONVERSATION_KINDS, Note
from wawindow.engine import cloudevents
from wawindow.engine.documents import Applied
from wawindow.engine.people import People
from wawindow.engine.store import WindowStore
from wawindow.engine.suppression import SuppressionConfig, Suppressions
from wawindow.errors import KafkaUnavailable, WawindowError
from wawindow.kafka import consent_records
from wawindow.kafka.connection import KafkaConnection
from wawindow.kafka.publisher import Publisher, Record
from wawindow.kafka.topics import wait_for_group_coordinator
from wawindow.keys import Topics
from wawindow.logs import mask_key
from wawindow.metrics import OPEN_COUNT_SHARDS, Metrics
from wawindow.rules.engine import invalid
from wawindow.rules.identity import links_of
from wawindow.rules.transitions import Transition

log = structlog.get_logger("wawindow.worker")

SWEEP_INTERVAL_S = 0.25
STALE_OUTBOX_S = 30
OBSERVE_INTERVAL_S = 5.0
# a sweeper failing again waits longer, up to this, before the next try
MAX_BACKOFF_S = 5.0
# a conversation that cannot be swept is tried again this much later
QUARANTINE_S = 60
# the consume loop and the sweeper each report progress; past this without any, the worker
# is not live (a stuck loop), and a sweeper failing this long makes it not ready
STALL_S = 60.0


class Worker:
    """One worker process: a member of the consumer group plus a deadline sweeper."""

    def __init__(
        self,
        *,
        bootstrap: str | KafkaConnection,
        topics: Topics,
        group_id: str,
        store: WindowStore,
        publisher: Publisher,
        batch_size: int = 500,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        stall_s: float = STALL_S,
        suppression: SuppressionConfig,
    ) -> None:
        self._kafka = KafkaConnection.of(bootstrap)
        self._topics = topics
        self._group_id = group_id
        self._store = store
        self._people = People(store, Suppressions(store, suppression))
        self._publisher = publisher
        self._batch_size = batch_size
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self.processed = 0
        self.metrics = metrics or Metrics()
        self._by_type: dict[str, Any] = {}
        # monotonic times of the last turn of the consume loop, of the last sweep that
        # succeeded, and since when sweeps have been failing (None: they are not)
        self._consumed_at = self._swept_at = time.monotonic()
        self._sweeps_failing_since: float | None = None
        self._batches_failing_since: float | None = None  # the same, for the batches
        self._stall_s = stall_s

    async def start(self) -> None:
        # on a fresh broker the offsets topic does not exist yet, and a consumer joining then
        # logs errors until it does; wait for the group's coordinator instead
        await wait_for_group_coordinator(self._kafka, self._group_id)
        self._consumer = AIOKafkaConsumer(
            self._topics.webhook_events,
            self._topics.consent_events,
            **self._kafka.options(),
            group_id=self._group_id,
            client_id="wawindow-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._batch_size,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        await self._flush_acknowledged()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and sweep until ``stop`` is set; the batch in hand is finished first.

        The sweeper and the gauges run beside the consume loop from the start, so closes do
        not wait for the group to assign partitions (after a restart, that waits for the dead
        member's session to time out)."""
        helpers = [
            asyncio.create_task(self.sweep_forever(stop), name="wawindow-sweeper"),
            asyncio.create_task(self.observe_forever(stop), name="wawindow-observer"),
        ]
        try:
            while not stop.is_set():
                self._consumed_at = time.monotonic()
                await self.run_once()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def health(self) -> dict[str, bool]:
        """``live``: both loops made progress lately; ``sweeping``: sweeps succeed;
        ``applying``: batches are written (not failing, each tried again, for ``stall_s``)."""
        now = time.monotonic()
        sweeps, batches = self._sweeps_failing_since, self._batches_failing_since
        stall = self._stall_s
        return {
            "live": now - self._consumed_at < stall and now - self._swept_at < stall,
            "sweeping": sweeps is None or now - sweeps < stall,
            "applying": batches is None or now - batches < stall,
        }

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Fetch and handle one batch; returns how many records it held. On a Redis or
        Kafka failure the batch is rewound (not committed) to be tried again."""
        consumer = self._running()
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self._batch_size)
        records = [r for rs in batch.values() for r in rs]
        if not records:
            await self._flush_acknowledged()
            return 0
        started = time.perf_counter()
        try:
            transitions, dead = await self._handle(records)
            await _commit(consumer)
        except WawindowError as exc:
            # rewind what is still ours; a partition a rebalance took away is redone by its
            # new owner from the last commit, which changes nothing twice. An error that is
            # not retriable here is not about one event (those are dead-lettered): a key or
            # a script of the store's, which an operator must see
            assigned = consumer.assignment()
            for tp, rs in batch.items():
                if tp in assigned:
                    consumer.seek(tp, rs[0].offset)
            self.metrics.worker_retries.inc()
            if self._batches_failing_since is None:
                self._batches_failing_since = time.monotonic()
            level = log.warning if exc.retriable else log.error
            level("worker.batch_retry", records=len(records), error=str(exc))
            await asyncio.sleep(0.5 if exc.retriable else 5.0)
            return 0
        self._batches_failing_since = None
        self.processed += len(records)
        elapsed = time.perf_counter() - started
        self.metrics.worker_records.inc(len(records))
        self.metrics.worker_batch_records.observe(len(records))
        self.metrics.worker_batch_seconds.observe(elapsed)
        log.info(
            "worker.batch",
            records=len(records),
            transitions=transitions,
            dead_letters=dead,
            latency_ms=round(elapsed * 1000, 2),
        )
        return len(records)

    async def drain(self, timeout_s: float = 60.0) -> int:
        """Handle records until this worker has consumed everything on its assigned partitions
        as of the call (a bounded mode for tests and one-shot runs)."""
        consumer = self._running()
        handled = 0
        async with asyncio.timeout(timeout_s):
            while not consumer.assignment():
                handled += await self.run_once(100)
            assigned = list(consumer.assignment())
            end = await consumer.end_offsets(assigned)
            while await _behind(consumer, end):
                handled += await self.run_once(100)
        return handled

    async def lag(self) -> int | None:
        """Records on this worker's partitions not yet committed; ``None`` before it has any."""
        lags = await self._lags(self._running())
        return sum(lags.values()) if lags else None

    @staticmethod
    async def _lags(consumer: AIOKafkaConsumer) -> dict[Any, int]:
        """Per assigned partition, the records not yet committed (empty before assignment)."""
        assigned = list(consumer.assignment())
        if not assigned:
            return {}
        end = await consumer.end_offsets(assigned)
        return {tp: end[tp] - (await consumer.committed(tp) or 0) for tp in assigned}

    async def _handle(self, records: Sequence[Any]) -> tuple[int, int]:
        dead: list[Record] = []
        events: list[tuple[str, dict[str, Any]]] = []
        raws: list[bytes] = []
        links: list[tuple[str, str]] = []
        decoded: list[tuple[dict[str, Any], bytes]] = []
        changes: list[dict[str, Any]] = []  # consent changes and erasures
        change_raws: list[bytes] = []
        for r in records:
            if r.topic == self._topics.consent_events:
                if r.value is None:
                    continue  # a tombstone of an erased change
                try:
                    change = orjson.loads(r.value)
                    problem = consent_records.invalid(change)
                except orjson.JSONDecodeError as exc:
                    problem = f"not JSON: {exc}"
                if problem is not None:
                    origin = f"{r.topic}/{r.partition}/{r.offset}"
                    dead.append(self._dead_letter(r.value, f"unreadable change: {problem}", origin))
                else:
                    for internal in ("ids", "linked"):  # set by the worker, never by a record
                        change.pop(internal, None)
                    changes.append(change)
                    change_raws.append(r.value)
                continue
            try:
                event = orjson.loads(r.value)
                problem = invalid(event)
            except orjson.JSONDecodeError as exc:
                problem = f"not JSON: {exc}"
            if problem is not None:  # checked before anything of it is used
                origin = f"{r.topic}/{r.partition}/{r.offset}"
                dead.append(self._dead_letter(r.value, f"unreadable event: {problem}", origin))
                continue
            decoded.append((event, r.value))
        # an erased person's older events (late, or replayed) never reach their state
        erased = await self._people.marks.erased([e for e, _ in decoded])
        for event, raw in decoded:
            if erased(event):
                self.metrics.events_erased.inc()
                continue
            links += links_of(event)
            if event["kind"] in CONVERSATION_KINDS:
                events.append((event["key"], event))
                raws.append(raw)
        now = int(self._clock())
        applied: list[Applied] = []
        if links:
            with self._timed("link"):
                applied += await self._store.link_many(links, now)
        # every event goes to where its user lives now (a wa_id key linked to a BSUID key)
        with self._timed("apply"):
            report = await self._store.apply(events, now)
        for (_, event), raw, result in zip(events, raws, report.results, strict=True):
            if isinstance(result, WawindowError) and result.retriable:
                raise result  # not the event's fault: the batch is tried again
            if isinstance(result, Exception) or result.error is not None:
                # a poison record: keep it and go on, never stop the worker
                why = result if isinstance(result, Exception) else result.error
                dead.append(
                    self._dead_letter(raw, f"worker could not apply {event.get('event_id')}: {why}")
                )
                continue
            self._count_notes(result.notes)
        applied += report.applied
        await self._people.note_numbers(
            ((e.get("phone_number_id"), e.get("waba_id")) for _, e in events), now
        )
        tombstones: list[Record] = []
        if changes:  # after the batch's webhooks: an erasure also erases what they brought
            with self._timed("people"):
                people = await self._people.apply(changes, now)
            for change, raw, outcome in zip(changes, change_raws, people.results, strict=True):
                if isinstance(outcome, WawindowError) and outcome.retriable:
                    raise outcome
                if isinstance(outcome, Exception) or outcome.error is not None:
                    why = outcome if isinstance(outcome, Exception) else outcome.error
                    dead.append(
                        self._dead_letter(
                            raw, f"worker could not apply {change['event_id']}: {why}"
                        )
                    )
            applied += people.applied
            tombstones = [
                Record(self._topics.consent_events, None, key.encode()) for key in people.tombstones
            ]
            # what erasures kept of opt-outs, on the consent topic too: a rebuild finds it
            tombstones += [
                Record(self._topics.consent_events, orjson.dumps(r), str(r["event_id"]).encode())
                for r in people.records
            ]
        transitions: list[Transition] = []
        seen: set[str] = set()
        for a in applied:
            for t in a.transitions:
                if t.id not in seen:  # a repeat returns the same pending transitions
                    seen.add(t.id)
                    transitions.append(t)
        publish = self._window_events(transitions)
        await self._publisher.publish(publish + dead + tombstones)
        self._count_published(transitions)
        self.metrics.dead_letters.labels("worker").inc(len(dead))
        # dropped from the outbox by the next batch's write (or when the worker is idle)
        self._store.carry([o for a in applied for o in a.outbox])
        return len(publish), len(dead)

    async def _flush_acknowledged(self) -> None:
        """Drop what Kafka acknowledged from the outbox now; when Redis cannot, the next
        batch or the next idle turn tries again (the stale-outbox sweep is 30 s away)."""
        if not self._store.carried:
            return
        try:
            with self._timed("acknowledge"):
                await self._store.flush_acknowledged()
        except WawindowError as exc:
            log.warning("worker.acknowledge_failed", error=str(exc))

    def _window_events(self, transitions: Sequence[Transition]) -> list[Record]:
        """The CloudEvents of ``transitions``, keyed by their conversation."""
        return [
            Record(
                self._topics.window_events,
                cloudevents.encode(t),
                t.key.encode(),
                cloudevents.HEADERS,
            )
            for t in transitions
        ]

    def _count_published(self, transitions: Sequence[Transition]) -> None:
        """Count window events by type once Kafka has them (label children looked up once)."""
        for t in transitions:
            child = self._by_type.get(t.type)
            if child is None:
                child = self._by_type[t.type] = self.metrics.window_events.labels(
                    t.type.cloudevent_type
                )
            child.inc()

    def _count_notes(self, notes: Sequence[Note]) -> None:
        m = self.metrics
        for what in notes:
            if what == Note.DUPLICATE:
                m.duplicates.inc()
            elif what == Note.OUT_OF_ORDER:
                m.out_of_order.inc()
            elif what == Note.CSW_CORRECTION:
                m.csw_corrections.inc()
            elif what == Note.DISAGREEMENT:
                m.disagreements.inc()
            elif what == Note.ERASED:
                m.events_erased.inc()

    @contextlib.contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.redis_seconds.labels(operation).observe(time.perf_counter() - started)

    async def observe(self) -> None:
        """Refresh the gauges: consumer lag per partition, open windows, Redis memory."""
        if self._consumer is not None:
            lags = await self._lags(self._consumer)
            self.metrics.consumer_lag.clear()
            for tp, behind in lags.items():
                topic = tp.topic.removeprefix(self._topics.prefix)
                self.metrics.consumer_lag.labels(topic, str(tp.partition)).set(behind)
        self.metrics.windows_open.set(await self._store.deadlines.open_count(OPEN_COUNT_SHARDS))
        used, limit = await self._store.memory()
        self.metrics.redis_used_memory.set(used)
        self.metrics.redis_max_memory.set(limit)

    def _dead_letter(self, value: bytes, reason: str, origin: str | None = None) -> Record:
        headers = [
            ("reason", reason.encode()),
            ("source", b"worker"),
            ("received_at_ms", str(int(time.time() * 1000)).encode()),
        ]
        if origin is not None:
            headers.append(("origin", origin.encode()))
        return Record(self._topics.dead_letter, value, None, tuple(headers))

    async def sweep(self, now: int | None = None, *, stale_outbox: bool = True) -> int:
        """Warn and close what is due at ``now``, re-publish stale outbox entries; returns how
        many transitions it published."""
        now = int(self._clock()) if now is None else now
        applied: list[Applied] = []
        with self._timed("due"):
            due = await self._store.deadlines.due(now)
        if due:
            with self._timed("close"):
                closed, failed = await self._store.close(due, now)
            applied += closed
            if failed:  # one bad conversation never stops the others: set aside, kept, retried
                await self._quarantine(failed, now)
        if stale_outbox:
            applied += await self._store.stale_outbox(now - STALE_OUTBOX_S)
        transitions = [t for a in applied for t in a.transitions]
        records = self._window_events(transitions)
        if records:
            await self._publisher.publish(records)
            self._count_published(transitions)
            published_at = self._clock()
            for t in transitions:
                if t.type.endswith(".closed"):
                    self.metrics.close_lateness.observe(max(0.0, published_at - t.time))
        with self._timed("acknowledge"):
            await self._store.acknowledge([o for a in applied for o in a.outbox])
        return len(records)

    async def _quarantine(self, failed: dict[str, Exception], now: int) -> None:
        """Conversations that could not be swept: their state goes to dead-letter with the
        reason, and they are tried again in QUARANTINE_S (not 4 times a second)."""
        records = []
        for key, exc in failed.items():
            log.warning("worker.close_failed", conversation=mask_key(key), error=str(exc))
            raw = await self._store.raw_state(key)
            records.append(self._dead_letter(raw or key.encode(), f"cannot sweep {key}: {exc}"))
        await self._store.deadlines.postpone(list(failed), now + QUARANTINE_S, due_at=now)
        await self._publisher.publish(records)
        self.metrics.conversations_quarantined.inc(len(failed))
        self.metrics.dead_letters.labels("worker").inc(len(records))

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        """Sweep every quarter second (stale outbox every five) until ``stop``; a failing
        sweep is logged, counted and retried with a growing pause."""
        ticks = 0
        backoff = SWEEP_INTERVAL_S
        while not stop.is_set():
            try:
                await self.sweep(stale_outbox=ticks % 20 == 0)
                self._swept_at = time.monotonic()
                self._sweeps_failing_since = None
                backoff = SWEEP_INTERVAL_S
            except WawindowError as exc:
                self.metrics.sweep_failures.inc()
                if self._sweeps_failing_since is None:
                    self._sweeps_failing_since = time.monotonic()
                log.warning("worker.sweep_failed", error=str(exc), retry_in_s=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            ticks += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)

    async def observe_forever(self, stop: asyncio.Event) -> None:
        """Refresh the gauges every few seconds, each time within a bound of its own."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(OBSERVE_INTERVAL_S):
                    await self.observe()
            except (WawindowError, KafkaError, TimeoutError) as exc:
                log.info("worker.observe_skipped", error=str(exc) or type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), OBSERVE_INTERVAL_S)

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the worker is not started")
        return self._consumer


async def _commit(consumer: AIOKafkaConsumer) -> None:
    """Commit the consumed offsets; Kafka's errors (a rebalance, a broker gone) translated."""
    try:
        await consumer.commit()
    except KafkaError as exc:
        raise KafkaUnavailable(f"Kafka: cannot commit the batch's offsets: {exc!r}") from exc


async def _behind(consumer: AIOKafkaConsumer, end: dict[Any, int]) -> bool:
    for tp, last in end.items():
        if await consumer.position(tp) < last:
            return True
    return False
