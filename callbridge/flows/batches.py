"""PBX events that one process has in hand at once, applied as one batch on PostgreSQL.

Applied one after another, each event costs two round trips to the database (its journal entry with its call
locked, then the call saved), and a round trip costs a worker more CPU than most of what it does with the answer. A
batch takes two for all of them: one statement journals every request and locks every call, the engine folds each
event, one statement saves every call; then the CRM rules and the rest run per call, as for one event, and all
share one commit. Requests that arrive while a batch is applied wait for the next, which takes them all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .. import metrics
from ..domain import engine
from ..domain.pbx import Events
from ..services import Services
from ..store import calls as call_store
from ..store import journal as journal_store
from ..store.journal import dedupe_key
from ..store.tables import utcnow
from . import events

log = logging.getLogger("callbridge.flows")
MAX_BATCH = 32  # requests in one batch at most: all are applied again, each alone, if one fails


async def ingest(services: Services, integration_id: int, params: dict[str, str], command: Events) -> events.Outcome:
    """Journal a PBX request and apply its events (`events.ingest_one`); on PostgreSQL in a batch with the others
    under way beside it. (SQLite runs its statements in this process: it has no round trips to save.)"""
    if services.db.is_sqlite or not EventBatches.takes(command):
        return await events.ingest_one(services, integration_id, params, command)
    if services.event_batches is None:
        services.event_batches = EventBatches(services)
    return await services.event_batches.ingest(integration_id, params, command)


@dataclass
class _Request:
    integration_id: int
    params: dict[str, str]
    command: Events
    key: str  # its dedupe key
    received_at: datetime
    answer: asyncio.Future

    @property
    def call(self) -> tuple[int, str]:
        return self.integration_id, self.command.call_key


class EventBatches:
    """This process's queue of PBX events waiting for a batch, and the task that applies them."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._waiting: list[_Request] = []
        self._applying: asyncio.Task | None = None

    @staticmethod
    def takes(command: Events) -> bool:
        """Whether a request goes in a batch: one event, of the call the request names (anything else is applied
        the way of one request, `events.ingest_one`)."""
        return len(command.events) == 1 and bool(command.call_key) and command.events[0].call_key == command.call_key

    async def ingest(self, integration_id: int, params: dict[str, str], command: Events) -> events.Outcome:
        """`ingest` of one request, answered once its batch is committed."""
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(integration_id, params, command, dedupe_key(params), utcnow(), answer))
        if self._applying is None:
            self._applying = asyncio.create_task(self._apply_while_waiting())
        return await asyncio.shield(answer)  # a PBX that hangs up leaves its batch alone

    async def _apply_while_waiting(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the requests read in this turn of the loop join the batch
                await self._apply(self._next_batch())
        finally:
            self._applying = None

    def _next_batch(self) -> list[_Request]:
        """Up to MAX_BATCH waiting requests, one per call (a call's next event waits for the next batch)."""
        batch: list[_Request] = []
        rest: list[_Request] = []
        calls: set[tuple[int, str]] = set()
        for request in self._waiting:
            if len(batch) < MAX_BATCH and request.call not in calls:
                calls.add(request.call)
                batch.append(request)
            else:
                rest.append(request)
        self._waiting = rest
        return batch

    async def _apply(self, batch: list[_Request]) -> None:
        """Apply a batch; if it fails, each request again alone, and repeats the way of one request."""
        try:
            async with self._services.db.shared_transaction() as session:
                applied, messages = await self._applied(session, batch)
        except Exception as exc:
            log.info("a batch of %s PBX events failed (%s); applying each alone", len(batch), exc.__class__.__name__)
            metrics.RUN_ALONE.inc(len(batch))
            applied, messages = {}, []
        metrics.REQUESTS.labels("applied").inc(len(applied))
        metrics.EVENTS.inc(len(applied))
        for n, outcome in applied.items():
            batch[n].answer.set_result(outcome)
        try:
            await events.committed(self._services, messages)
        except Exception:  # they are applied and answered: the cards come with the call's next change
            log.exception("the live messages of a batch of PBX events were not sent")
        await asyncio.gather(*(self._alone(request) for n, request in enumerate(batch) if n not in applied))

    async def _applied(self, session, batch: list[_Request]) -> tuple[dict[int, events.Outcome], list[dict[str, Any]]]:
        """The batch's requests that were new, applied (by their place in the batch), and the live messages."""
        entries = await journal_store.journal_and_lock_many(session, [
            {"integration_id": r.integration_id, "dedupe_key": r.key, "command": r.command.command,
             "call_key": r.command.call_key, "received_at": r.received_at, "params": r.params}
            for r in batch])  # fmt: skip
        applied: dict[int, events.Outcome] = {}
        changed = []
        for n, request in enumerate(batch):
            if (entry := entries.get(request.key)) is None:
                continue  # journaled before
            entry_id, locked = entry
            applied[n] = events.Outcome(entry_id, call_ids=(locked.id,))
            updated, effects = engine.apply(locked.call, request.command.events[0])
            if updated != locked.call:
                changed.append((request, locked, updated, effects))
        views = await call_store.save_calls(session, [(locked, updated) for _, locked, updated, _ in changed]) \
            if changed else []
        messages = []
        unknown: set[str] = set()  # the numbers of calls saved with no client: their CRM rules may make one
        for (request, locked, updated, effects), view in zip(changed, views, strict=True):
            if view.client_id is None and view.phone:
                if view.phone in unknown:  # as if saved after the rules of the batch's earlier calls, as alone
                    view = replace(view, client_id=await call_store.take_number_owner(session, view.id, view.phone))
                unknown.add(view.phone)
            messages += await events.after_saving(self._services, session, request.integration_id, locked, updated,
                                                  effects, view)  # fmt: skip
        return applied, messages

    async def _alone(self, request: _Request) -> None:
        try:
            request.answer.set_result(await events.ingest_one(self._services, request.integration_id, request.params,
                                                              request.command))  # fmt: skip
        except asyncio.CancelledError:  # the process is stopping: the PBX sends it again
            request.answer.cancel()
            raise
        except Exception as exc:  # StoreBusy, a lost database: the request's own answer
            request.answer.set_exception(exc)
