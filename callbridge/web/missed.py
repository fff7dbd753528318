"""My missed calls: the ones that rang me or came from my clients, not yet returned, with a button to call back;
and the ones returned lately, by whom and how soon. The header's count comes from here too."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import flows
from ..store import directory
from ..store.tables import utcnow
from . import auth
from .pages import WORKSPACE, render, services_of

router = APIRouter(**WORKSPACE)
LOOKBACK = timedelta(days=30)  # a missed call older than this is no longer on anyone's list
RETURNED_SHOWN = timedelta(days=7)  # how long a returned one stays on the list, with who returned it


async def _mine(request: Request):
    user = await auth.signed_in(request)
    return user, await flows.my_missed(services_of(request), user["id"], utcnow() - LOOKBACK)


@router.get("/missed")
async def missed_page(request: Request):
    _, missed = await _mine(request)
    owed = [m for m in missed if not m.returned]
    recent = utcnow() - RETURNED_SHOWN
    returned = [m for m in missed if m.returned and m.returned_at >= recent]
    async with services_of(request).db.read() as session:
        people = {e.id: e for e in await directory.list_employees(session)}
        names = await directory.client_names(session, {m.call.client_id for m in missed if m.call.client_id})
    return render(request, "missed.html", owed=owed, returned=returned, people=people, names=names)


@router.get("/missed/count")
async def missed_count(request: Request):
    """How many of my missed calls are owed a call (the header shows it, and asks again as calls come and go)."""
    _, missed = await _mine(request)
    return JSONResponse({"owed": sum(not m.returned for m in missed)})
