"""The figures a face shows of a period: the calls (store/analytics) and the missed calls recovered, each judged by
its integration's callback SLA (the CRM rules' `callback_sla_minutes`)."""

from __future__ import annotations

from datetime import datetime

from ..automation import Rules
from ..services import Services
from ..store import callbacks, integrations

DEFAULT_SLA = Rules().callback_sla_minutes * 60


async def recovery(services: Services, since: datetime, until: datetime) -> callbacks.Recovery:
    """Missed calls of [since, until), returned or not, within their integration's SLA or not."""
    async with services.db.read() as session:
        missed = await callbacks.missed_calls(session, since=since, until=until)
        rows = await integrations.list_integrations(session)
    sla = {row.id: Rules.model_validate(row.automation).callback_sla_minutes * 60 for row in rows}
    found = callbacks.recovered(missed, sla, DEFAULT_SLA)
    found.sla_minutes = (sla.popitem()[1] if len(set(sla.values())) == 1 else DEFAULT_SLA) // 60
    return found


async def my_missed(services: Services, employee_id: int, since: datetime) -> list[callbacks.Missed]:
    """The missed calls that rang this employee or came from their clients since then, returned or not."""
    async with services.db.read() as session:
        return await callbacks.missed_calls(session, since=since, employee_id=employee_id)
