"""Services: what the flows need, built once per process (database, live bus, HTTP clients, caches)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from . import automation, outbound
from .config import Settings
from .live import LiveBus
from .recording_files import RecordingFiles
from .store import Database, integrations
from .store import journal as journal_store
from .store import lookup_source as source_store
from .store import webhooks as webhook_store
from .store.journal import dedupe_key
from .store.tables import Integration, LookupSource, Webhook, utcnow

if TYPE_CHECKING:  # the dialects are handed in: nothing below them imports one
    from .dialects.base import Dialect


class RateLimiter:
    """Requests to one PBX account are spaced so that at most `rate` a second leave this process."""

    def __init__(self) -> None:
        self._next: dict[int, float] = {}

    async def wait(self, key: int, rate: float | None) -> None:
        if not rate:
            return
        now = time.monotonic()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + 1.0 / rate
        if slot > now:
            await asyncio.sleep(slot - now)


class LookupJournal:
    """Requests that only ask (caller lookups, pings), journaled in batches right after they are answered.

    A lookup holds a ringing call and changes nothing, so it never waits for a write.
    """

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []  # journal rows, but for their keys (hashed when written)

    def add(self, integration_id: int, params: dict[str, str], reply: dict[str, Any], *, command: str | None,
            call_key: str | None, error: str | None = None) -> None:  # fmt: skip
        """Keep a request that was answered (`command` and `call_key` as the dialect names them), with what went
        wrong while answering it (the lookup source failed), which the call then shows; received now, whenever it
        is written."""
        self._pending.append({"integration_id": integration_id, "command": (command or "")[:32] or None,
                              "call_key": (call_key or "")[:200] or None, "params": params, "reply": reply,
                              "status": "answered", "error": error, "received_at": utcnow()})  # fmt: skip

    async def flush(self, db: Database) -> int:
        """Journal what was answered since the last flush; if the store refuses (busy, down), it is kept for the
        next one."""
        batch, self._pending = self._pending, []
        if batch:
            try:
                async with db.transaction() as session:
                    await journal_store.journal_many(session, [r | {"dedupe_key": dedupe_key(r["params"])}
                                                               for r in batch])  # fmt: skip
            except BaseException:
                self._pending[:0] = batch
                raise
        return len(batch)


@dataclass
class Services:
    """What the flows need, built once per process."""

    db: Database
    settings: Settings
    dialects: dict[str, Dialect]
    recording_files: RecordingFiles
    bus: LiveBus = field(default_factory=LiveBus)
    lookups: LookupJournal = field(default_factory=LookupJournal)
    rate: RateLimiter = field(default_factory=RateLimiter)
    _pool: httpx.AsyncHTTPTransport | None = None  # one connection pool under every client's outbound policy
    _clients: dict[tuple[frozenset[outbound.Endpoint], int], httpx.AsyncClient] = field(default_factory=dict)
    _integrations: dict[int, tuple[float, Integration | None, automation.Rules]] = field(default_factory=dict)
    _settings_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)  # webhooks, lookup source: (until, it)
    outbox_due: asyncio.Event = field(default_factory=asyncio.Event)  # set: the outbox worker looks now
    receivers_down: dict[int, float] = field(default_factory=dict)  # webhook id -> until when its deliveries wait
    # (kept past that moment until the receiver answers: the next batch sends one delivery first)
    source_answers: dict[str, tuple[float, Any]] = field(default_factory=dict)  # phone -> (until, lookup answer)
    background: set[asyncio.Task] = field(default_factory=set)  # work started after an answer, held till done
    event_batches: Any = None  # flows.batches.EventBatches of this process, made on first use (PostgreSQL)

    async def rules(self, integration_id: int) -> automation.Rules:
        return (await self._integration(integration_id))[2]

    async def integration(self, integration_id: int | None) -> Integration | None:
        """The integration (None for no id: what an unreadable id in a URL names)."""
        return (await self._integration(integration_id))[1] if integration_id is not None else None

    async def webhooks(self) -> list[Webhook]:
        """The enabled webhooks: every call event asks which want it."""
        return await self._cached("webhooks", lambda session: webhook_store.list_webhooks(session, enabled_only=True))

    async def lookup_source(self) -> LookupSource | None:
        """The company's system asked about unknown numbers, if any."""
        return await self._cached("lookup_source", source_store.get)

    def forget_lookup_source(self) -> None:
        self._settings_cache.pop("lookup_source", None)
        self.source_answers.clear()

    async def _cached(self, name: str, load):
        """What `load(session)` reads, kept for `integration_cache_seconds` like the integrations."""
        until, found = self._settings_cache.get(name, (0.0, None))
        if until <= time.monotonic():
            async with self.db.read() as session:
                found = await load(session)
            self._settings_cache[name] = (time.monotonic() + self.settings.integration_cache_seconds, found)
        return found

    def spawn(self, work) -> None:
        """Run `work` after the answer, keeping the task until it is done (the loop keeps tasks weakly)."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def paused_webhooks(self) -> list[int]:
        """Webhooks whose receiver just failed: their other deliveries wait a little instead of each failing."""
        now = time.monotonic()
        return [webhook_id for webhook_id, until in self.receivers_down.items() if until > now]

    def receiver_down_for(self, webhook_id: int) -> float:
        """Seconds this webhook's deliveries still wait after its receiver failed (0: none)."""
        return max(0.0, self.receivers_down.get(webhook_id, 0.0) - time.monotonic())

    def forget_webhooks(self) -> None:
        self._settings_cache.pop("webhooks", None)

    def forget(self, integration_id: int) -> None:
        """Drop this process's cached copy of an integration that was just changed."""
        self._integrations.pop(integration_id, None)

    async def _integration(self, integration_id: int) -> tuple[float, Integration | None, automation.Rules]:
        """An integration and its rules, cached for a few seconds: they are read on every PBX request."""
        cached = self._integrations.get(integration_id)
        if cached and cached[0] > time.monotonic():
            return cached
        async with self.db.read() as session:
            found = await integrations.get_integration(session, integration_id)
        rules = automation.Rules.model_validate(found.automation if found else {})
        cached = self._integrations[integration_id] = (
            time.monotonic() + self.settings.integration_cache_seconds,
            found,
            rules,
        )
        return cached

    def http_client(
        self, integration: Mapping[str, Any] | None = None, max_answer: int = outbound.ANSWER_CAP
    ) -> httpx.AsyncClient:
        """An HTTP client under the outbound policy, trusting the addresses an admin set in these integration
        settings (the PBX's API), reading at most `max_answer` bytes of an answer."""
        key = (outbound.admin_hosts(integration or {}), max_answer)
        client = self._clients.get(key)
        if client is None:
            if self._pool is None:
                self._pool = httpx.AsyncHTTPTransport()
            policy = outbound.OutboundPolicy(self.settings.outbound_allow)
            transport = outbound.PolicyTransport(policy, self._pool, key[0], max_answer)
            client = self._clients[key] = httpx.AsyncClient(transport=transport,
                                                            timeout=self.settings.pbx_timeout_seconds)  # fmt: skip
        return client

    async def close(self) -> None:
        await asyncio.gather(*list(self.background), return_exceptions=True)
        await self.lookups.flush(self.db)
        for client in self._clients.values():
            await client.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        await self.recording_files.close()
        await self.db.close()
