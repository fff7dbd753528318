"""The CRM's pages: clients and their deals, tasks, and a period's figures."""

from __future__ import annotations


from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse

from ..domain.ids import parse_id
from ..domain.phones import normalize, number_parts
from ..store import crm, directory
from ..store import calls as call_store
from ..store import recordings as recording_store
from ..store.tables import utcnow
from . import access, auth
from .pages import (
    PAGE,
    WORKSPACE,
    IdPath,
    back,
    checked_form,
    page_of,
    pager,
    render,
    services_of,
)

router = APIRouter(**WORKSPACE)


# ---- clients, deals, tasks ----------------------------------------------------------------------


@router.get("/clients")
async def clients_page(request: Request):
    await auth.signed_in(request)
    services = services_of(request)
    q = request.query_params
    text, page, region = q.get("q", "").strip(), page_of(q), services.settings.default_region
    async with services.db.read() as session:
        found, total = await directory.search_clients(
            session, text, normalize(text, region), PAGE, number_parts(text, region), offset=page * PAGE
        )
        phones = await directory.phones_of(session, [c.id for c in found])
        people = {e.id: e for e in await directory.list_employees(session)}
    return render(request, "clients.html", clients=found, phones=phones, people=people, q=text, total=total,
                  pages=pager(q, page, total), new_phone=q.get("phone", ""))  # fmt: skip


@router.post("/clients")
async def create_client(request: Request):
    await auth.signed_in(request)
    form = await checked_form(request)
    services = services_of(request)
    phone = normalize(form.get("phone"), services.settings.default_region)
    responsible = parse_id(form.get("responsible"))
    try:
        async with services.db.transaction() as session:
            await _known_employee(session, responsible)
            name = form.get("name", "").strip() or phone or "?"
            phones = [phone] if phone else []
            client = await directory.add_client(session, name=name, phones=phones, responsible_id=responsible)
    except directory.PhoneTaken:
        if request.headers.get("x-requested-with") == "fetch":  # the card: it links to the client the rules made
            async with services.db.read() as session:
                owner = await directory.owner_of(session, phone) if phone else None
            return JSONResponse({"client": owner, "taken": True}, status_code=409)
        raise HTTPException(409, "this number already belongs to a client") from None
    if request.headers.get("x-requested-with") == "fetch":  # created from the card, which stays where it is
        return JSONResponse({"client": client.id})
    return RedirectResponse(f"/clients/{client.id}", status_code=303)


@router.get("/clients/{client_id}")
async def client_page(client_id: IdPath, request: Request):
    user = await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        client = await directory.get_client(session, client_id)
        if client is None:
            raise HTTPException(404, "no such client")
        phones = (await directory.phones_of(session, [client_id])).get(client_id, [])
        deals = (await directory.deals_of(session, [client_id])).get(client_id, [])
        tasks = await directory.open_tasks_of_client(session, client_id)
        records = await crm.interactions_of(session, client_id)
        deal_calls = await crm.deal_calls_of(session, client_id)
        calls, _ = await call_store.list_calls(session, call_store.CallFilter(client_id=client_id), limit=20)
        people = {e.id: e for e in await directory.list_employees(session)}
        heard = [r.call_id for r in records] + [c.id for rows in deal_calls.values() for c in rows]
        kept = {i for i, r in (await recording_store.of_calls(session, heard)).items() if r.status == "kept"}
    mine = access.may_change_client(user, client, services_of(request).settings.shared_crm)
    return render(request, "client.html", client=client, phones=phones, deals=deals, tasks=tasks, records=records,
                  calls=calls, people=people, deal_calls=deal_calls, kept=kept, mine=mine)  # fmt: skip


@router.post("/clients/{client_id}")
async def edit_client(client_id: IdPath, request: Request):
    user = await auth.signed_in(request)
    form = await checked_form(request)
    services = services_of(request)
    shared = services.settings.shared_crm
    async with services.db.transaction() as session:
        client = await directory.get_client(session, client_id)
        if client is None:
            raise HTTPException(404, "no such client")
        responsible = await _known_employee(session, parse_id(form.get("responsible")))
        if not access.may_make_responsible(user, client, responsible, shared):
            raise HTTPException(403, "not_yours_client")
        details = form.get("name", "").strip() or form.get("phone", "").strip() or form.get("deal", "").strip()
        if details and not access.may_change_client(user, client, shared):
            raise HTTPException(403, "not_yours_client")
        if form.get("name", "").strip():
            client.name = form["name"].strip()
        client.responsible_id = responsible
        if phone := normalize(form.get("phone"), services.settings.default_region):
            try:
                await directory.add_phone(session, client_id, phone)
            except directory.PhoneTaken:
                raise HTTPException(409, "this number already belongs to a client") from None
        if form.get("deal", "").strip():
            await directory.add_deal(session, client_id=client_id, title=form["deal"].strip())
    return RedirectResponse(f"/clients/{client_id}", status_code=303)


@router.post("/deals/{deal_id}/close")
async def close_deal(deal_id: IdPath, request: Request):
    user = await auth.signed_in(request)
    await checked_form(request)
    services = services_of(request)
    async with services.db.transaction() as session:
        deal = await directory.get_deal(session, deal_id)
        if deal is None:
            raise HTTPException(404, "no such deal")
        client = await directory.get_client(session, deal.client_id)
        if not access.may_change_client(user, client, services.settings.shared_crm):
            raise HTTPException(403, "not_yours_deal")
        await directory.set_deal_status(session, deal_id, "closed")
    return back(request)


@router.get("/tasks")
async def tasks_page(request: Request):
    user = await auth.signed_in(request)
    q = request.query_params
    mine, status = q.get("who", "mine") == "mine", q.get("status", "open")
    page = page_of(q)
    async with services_of(request).db.read() as session:
        rows, total = await directory.list_tasks(session, status=status if status in ("open", "done") else None,
                                                 employee_id=user["id"] if mine else None, limit=PAGE,
                                                 offset=page * PAGE)  # fmt: skip
        people = {e.id: e for e in await directory.list_employees(session)}
        names = await directory.client_names(session, {t.client_id for t in rows if t.client_id})
    return render(request, "tasks.html", tasks=rows, total=total, people=people, names=names, mine=mine, status=status,
                  now=utcnow(), pages=pager(q, page, total))  # fmt: skip


@router.post("/tasks/{task_id}/done")
async def task_done(task_id: IdPath, request: Request):
    user = await auth.signed_in(request)
    await checked_form(request)
    services = services_of(request)
    async with services.db.transaction() as session:
        task = await directory.get_task(session, task_id)
        if task is None:
            raise HTTPException(404, "no such task")
        client = await directory.get_client(session, task.client_id)
        if not access.may_change_task(user, task, client, services.settings.shared_crm):
            raise HTTPException(403, "not_yours_task")
        await directory.set_task_status(session, task_id, "done", utcnow())
    return back(request, "/tasks")


async def _known_employee(session, employee_id: int | None) -> int | None:
    if employee_id is not None and await directory.get_employee(session, employee_id) is None:
        raise HTTPException(400, "no such employee")
    return employee_id
