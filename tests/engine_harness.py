"""A scenario: the real receiver, real Kafka topics, a real worker and real Redis, driven by
webhook bodies on a timeline of Meta's timestamps."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from tests.conftest import APP_SECRET, SUPPRESSION_KEY, Client
from tests.kafkautil import read_all, values
from wawindow.config import Settings
from wawindow.contracts import DAY
from wawindow.dev import samples
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.suppression import SuppressionConfig
from wawindow.engine.worker import Worker
from wawindow.finance.counts import read_counters
from wawindow.ingest.signature import HEADER, sign
from wawindow.kafka.publisher import Publisher
from wawindow.keys import Topics
from wawindow.redis.connection import AnyRedis, connect
from wawindow.rules import opt_out
from wawindow.rules.engine import Rules
from wawindow.rules.service_window import windows
from wawindow.rules.state import State

PN = samples.PHONE_NUMBER_ID
USER = "16505551234"
KEY = f"{PN}:{USER}"
HOUR = 3600


class Scenario:
    def __init__(
        self, receiver: Client, settings: Settings, topics: Topics, redis: AnyRedis
    ) -> None:
        self.receiver = receiver
        self.settings = settings
        self.topics = topics
        self.redis = redis
        self.store = WindowStore(redis, EngineConfig())
        self.now = int(time.time())
        self.workers: list[Worker] = []
        self._publishers: list[Publisher] = []

    # -- input -----------------------------------------------------------------------------

    async def post(self, *changes: dict[str, Any]) -> None:
        await self.post_body(samples.encode(samples.body(*changes)))

    async def post_body(self, raw: bytes) -> None:
        """Post a whole webhook body, signed as Meta signs it."""
        response = await self.receiver.post(
            "/webhook", data=io.BytesIO(raw), headers={HEADER: sign(raw, APP_SECRET)}
        )
        assert response.status == 200, await response.text()

    async def inbound(self, wamid: str, at: int, text: str = "hello", user: str = USER) -> None:
        await self.post(
            samples.messages_change(messages=[samples.text_message(wamid, at, text, wa_id=user)])
        )

    async def status(self, wamid: str, state: str, at: int, **kwargs: Any) -> None:
        await self.post(
            samples.messages_change(statuses=[samples.status(wamid, state, at, **kwargs)])
        )

    # -- the engine ------------------------------------------------------------------------

    async def worker(self, group: str = "engine", **options: Any) -> Worker:
        assert self.settings.kafka_bootstrap
        publisher = Publisher(self.settings.kafka_bootstrap, ack_timeout_ms=5000)
        await publisher.start()
        worker = Worker(
            bootstrap=self.settings.kafka_bootstrap,
            topics=self.topics,
            group_id=group,
            store=self.store,
            publisher=publisher,
            **{"suppression": SuppressionConfig.of(SUPPRESSION_KEY.encode()), **options},
        )
        await worker.start()
        self.workers.append(worker)
        self._publishers.append(publisher)
        return worker

    async def process(self) -> None:
        """Let the first worker consume everything posted so far."""
        if not self.workers:
            await self.worker()
        await self.workers[0].drain()

    async def sweep(self, at: int | None = None) -> int:
        if not self.workers:
            await self.worker()
        return await self.workers[0].sweep(self.now if at is None else at)

    async def close(self) -> None:
        for worker in self.workers:
            await worker.stop()
        for publisher in self._publishers:
            await publisher.stop()

    # -- output ----------------------------------------------------------------------------

    async def events(self) -> list[dict[str, Any]]:
        assert self.settings.kafka_bootstrap
        return values(await read_all(self.settings.kafka_bootstrap, self.topics.window_events))

    async def event_types(self) -> list[str]:
        return [e["type"].removeprefix("wawindow.") for e in await self.events()]

    async def counts(self) -> Counter[str]:
        """Every finance counter summed over time, keyed 'metric' or 'metric|dims'."""
        today = self.now // DAY
        rows = await read_counters(self.redis, today - 10, today + 2)
        out: Counter[str] = Counter()
        for row in rows:
            out["|".join((row.metric, *row.dimensions))] += row.count
        return out

    async def state(self, key: str = KEY) -> dict[str, str]:
        """The conversation's latest service window and opt-outs as flat fields (``{}`` for
        a key that holds nothing)."""
        return flat_state(await self.store.conversation(key), self.store.rules)

    async def dead_letters(self) -> list[Any]:
        assert self.settings.kafka_bootstrap
        return await read_all(self.settings.kafka_bootstrap, self.topics.dead_letter)


@asynccontextmanager
async def scenario(
    receiver: Client, settings: Settings, topics: Topics, redis_url: str
) -> AsyncIterator[Scenario]:
    client = await connect(redis_url)
    await client.flushdb()
    s = Scenario(receiver, settings, topics, client)
    try:
        yield s
    finally:
        await s.close()
        await client.aclose()


def flat_state(state: State, rules: Rules) -> dict[str, str]:
    if state.empty:
        return {}
    out = {k: v for k, v in (("waba", state.waba_id), ("user_id", state.user_id),
                             ("wa_id", state.wa_id)) if v}  # fmt: skip
    ws = windows(state.inbound, state.cuts)
    if ws:
        mark = state.windows.get(ws[-1].opened)
        out |= {"csw_opened": str(ws[-1].opened), "csw_expires": str(ws[-1].expires),
                "csw_closed": "1" if mark is not None and mark.closed else "0"}  # fmt: skip
    for name in opt_out.FIELDS:
        out[name] = "1" if opt_out.opted_out(state, name) else "0"
    for c in state.conversations.values():
        if not c.closed:
            out[f"cv:{c.category}"] = "1"
    return out


def loads(raw: bytes) -> Any:
    return orjson.loads(raw)
