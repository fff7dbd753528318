"""Who is on the line now, live, and the header's switch an employee sets when they step away (no card comes to
them then, and a PBX's lookup names the next rule's choice instead of them)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..store import directory
from ..store.presence import presence
from . import auth
from .pages import WORKSPACE, checked_form, render, services_of

router = APIRouter(**WORKSPACE)


@router.get("/presence")
async def presence_page(request: Request):
    await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        states = await presence(session)
        people = {e.id: e for e in await directory.list_employees(session)}
    return render(request, "presence.html", states=states, people=people)


@router.post("/me/away")
async def step_away(request: Request):
    """The employee says they stepped away (`away=1`) or are back; the page then opens its card stream again."""
    user = await auth.signed_in(request)
    away = (await checked_form(request)).get("away") == "1"
    async with services_of(request).db.transaction() as session:
        await directory.update_employee(session, user["id"], away=away)
    return JSONResponse({"away": away})
