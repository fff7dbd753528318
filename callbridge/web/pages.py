"""The workspace: server-rendered pages for the people who use callbridge all day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from .. import flows, recordings, safejson
from ..domain.ids import MAX_ID, parse_id
from ..domain.pbx import PbxError
from ..domain.phones import display, normalize, number_parts
from ..live import Holder, event_stream, for_employee
from ..services import Services
from ..store import calls as call_store
from ..store import directory
from ..store import journal as journal_store
from ..store import outbox as outbox_store
from ..store import recordings as recording_store
from ..store.tables import utcnow
from . import access, auth, export
from .i18n import LANGUAGES, amount, explain, moment, translate, translations

def readable_query(request: Request) -> None:
    """Every page's query string as text a database can search for: a NUL (PostgreSQL refuses it in any string) or
    a lone surrogate is a 400 before the page runs."""
    for name, value in request.query_params.multi_items():
        try:
            safejson.check_text(name)
            safejson.check_text(value)
        except safejson.JsonRefused:
            raise HTTPException(400, "the query string holds characters no text has") from None


WORKSPACE = {"include_in_schema": False, "dependencies": [Depends(readable_query)]}  # every page router's
router = APIRouter(**WORKSPACE)
templates = Jinja2Templates(directory=str(FilePath(__file__).with_name("templates")))
templates.env.add_extension("jinja2.ext.i18n")
PAGE = 50
EXPORT_ROWS = 100_000  # calls in one CSV export at most
MAX_COMMENT = 4000
MAX_PAGE = 100_000  # 5 million calls back: further is a search, not paging
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def services_of(request: Request) -> Services:
    return request.app.state.services


def lang_of(request: Request) -> str:
    return request.session.get("lang") if request.session.get("lang") in LANGUAGES else "ru"


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    """A page in the user's language: `t(key)`, `ngettext` for counts, dates and amounts as the language writes
    them, times in the company's zone. (Rendering is synchronous: the catalog installed here is the one it uses.)"""
    lang = lang_of(request)
    zone = ZoneInfo(services_of(request).settings.timezone)
    templates.env.install_gettext_translations(translations(lang), newstyle=True)
    context |= {
        "request": request,
        "lang": lang,
        "t": lambda key, **values: translate(key, lang, **values),
        "user": getattr(request.state, "user", None),
        "csrf": auth.csrf_token(request),
        "display": lambda phone: display(phone) if phone else "",
        "local": lambda value: value.astimezone(zone),
        "moment": lambda value: moment(value.astimezone(zone), lang),
        "amount": lambda value: amount(value, lang),
        "explain": lambda text: explain(text, lang),
    }
    return templates.TemplateResponse(request, name, context, status_code=status_code)


NOT_PAGES = ("/api", "/hooks", "/static", "/docs", "/redoc", "/openapi.json", "/metrics", "/healthz", "/dial",
             "/cards", "/live", "/missed/count")  # what answers JSON or data, not pages  # fmt: skip


def error_page(request: Request, status: int, key: str, detail: str | None = None) -> HTMLResponse:
    """An error as a page people read: in their language, the technical detail one click away (a detail that is a
    catalog key is said in words instead)."""
    if detail and translate(detail, lang_of(request)) != detail:
        key, detail = detail, None
    words = translate(key, lang_of(request))
    return render(request, "error.html", status_code=status, message=words if words != key else
                  translate("http_error", lang_of(request)), detail=detail)  # fmt: skip


async def checked_form(request: Request) -> dict[str, str]:
    """A POSTed form whose CSRF token matches the session's."""
    form = await request.form()
    if not auth.csrf_ok(request, form.get("csrf")):
        raise HTTPException(403, "the form is stale: reload the page")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def back(request: Request, fallback: str = "/calls") -> RedirectResponse:
    """Back to the page the form was on: the Referer's path when it is this site's, never another host."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.url.netloc:
        return RedirectResponse(fallback, status_code=303)
    target = referer.path + (f"?{referer.query}" if referer.query else "")
    return RedirectResponse(auth.local_path(target, fallback), status_code=303)


# ---- signing in ---------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request):
    return render(request, "login.html", failed=None)


@router.post("/login")
async def login(request: Request):
    form = await checked_form(request)
    guard: auth.SignInGuard = request.app.state.sign_in
    login, address = form.get("login", "").strip()[:200], request.client.host if request.client else "?"
    if not await guard.allowed(login, address):
        return render(request, "login.html", failed="throttled", status_code=429, next_path=form.get("next"))
    async with services_of(request).db.read() as session:
        employee = await directory.employee_for_login(session, login)
    if not await guard.password_matches(employee, form.get("password", "")):
        await guard.failed(login, address)
        return render(request, "login.html", failed="wrong", next_path=form.get("next"))
    auth.start_session(request, employee)
    return RedirectResponse(auth.local_path(form.get("next")), status_code=303)


@router.post("/logout")
async def logout(request: Request):
    await checked_form(request)
    user = await auth.signed_in(request)
    async with services_of(request).db.transaction() as session:
        await directory.end_sessions(session, user["id"])
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{code}")
async def language(code: str, request: Request):
    if code in LANGUAGES:
        request.session["lang"] = code
    return back(request)


@router.get("/")
async def home(request: Request):
    await auth.signed_in(request)
    return RedirectResponse("/calls", status_code=303)


# ---- the call journal ---------------------------------------------------------------------------


@router.get("/calls")
async def journal(request: Request):
    """The journal, newest first (its first page fetches itself again as calls come in)."""
    await auth.signed_in(request)
    services = services_of(request)
    q = request.query_params
    page = page_of(q)
    async with services.db.read() as session:
        rows, total = await call_store.list_calls(session, _journal_filter(services, q), limit=PAGE, offset=page * PAGE)
        kept = await recording_store.of_calls(session, [r.id for r in rows])
        people = {e.id: e for e in await directory.list_employees(session)}
        names = await directory.client_names(session, {r.client_id for r in rows if r.client_id})
        owed = await call_store.not_called_back(session, rows)
    return render(request, "calls.html", rows=rows, total=total, people=people, names=names, q=q,
                  pages=pager(q, page, total),
                  owed=owed, live=page == 0, export=with_query(q, page=0),
                  kept={i for i, r in kept.items() if r.status == "kept"})  # fmt: skip


@router.get("/calls.csv")
async def journal_csv(request: Request):
    """The filtered journal as CSV (up to EXPORT_ROWS calls), for a spreadsheet: times in the company's zone."""
    await auth.signed_in(request)
    services, lang = services_of(request), lang_of(request)
    zone = ZoneInfo(services.settings.timezone)
    where = _journal_filter(services, request.query_params)
    columns = ("when", "direction", "phone", "client", "employee", "result", "wait", "talk", "comment")
    words = [translate(k, lang) for k in columns]

    async def lines():
        async with services.db.read() as session:
            people = {e.id: e.name for e in await directory.list_employees(session)}
            yield "\ufeff" + export.csv_line(words + ["id"])  # the byte order mark: Excel then reads UTF-8
            for offset in range(0, EXPORT_ROWS, 1000):
                rows, _ = await call_store.list_calls(session, where, limit=1000, offset=offset)
                names = await directory.client_names(session, {r.client_id for r in rows if r.client_id})
                for r in rows:
                    yield export.csv_line([
                        r.started_at.astimezone(zone).strftime("%d.%m.%Y %H:%M") if r.started_at else "",
                        translate(r.direction, lang), r.phone or "", names.get(r.client_id, ""),
                        people.get(r.employee_id, ""), translate(r.result or r.state, lang),
                        r.wait_seconds, r.talk_seconds, r.comment or "", r.id])  # fmt: skip
                if len(rows) < 1000:
                    return

    filename = f"calls-{datetime.now(zone).strftime('%Y-%m-%d')}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="{filename}"'})  # fmt: skip


def _journal_filter(services: Services, q) -> call_store.CallFilter:
    """The journal's filters from the query string; days are the company's (CALLBRIDGE_TIMEZONE), not UTC's."""
    zone = ZoneInfo(services.settings.timezone)
    since, until = date_param(q.get("since")), date_param(q.get("until"))
    return call_store.CallFilter(
        **_number_filter(q.get("phone", ""), services.settings.default_region),
        employee_id=parse_id(q.get("employee")),
        direction=q.get("direction") if q.get("direction") in ("in", "out") else None,
        result=q.get("result") or None,
        owed=q.get("owed") == "1",
        since=datetime.combine(since, datetime.min.time(), zone) if since else None,
        until=datetime.combine(until + timedelta(days=1), datetime.min.time(), zone) if until else None,
    )


def _number_filter(text: str, region: str) -> dict:
    """A whole number is looked up as it is (the index); a part of one, in any writing, within every number."""
    whole = normalize(text, region) if text.strip() else None
    if whole and whole.startswith("+") and sum(ch.isdigit() for ch in text) >= 10:  # not "555-01-02" as +7 555…
        return {"phone": whole}
    return {"number_parts": number_parts(text, region)} if text.strip() else {}


@router.get("/calls/{call_id}")
async def call_page(call_id: IdPath, request: Request):
    await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        row = await call_store.get_call(session, call_id)
        if row is None:
            raise HTTPException(404, "no such call")
        legs = (await call_store.legs_of(session, [call_id]))[call_id]
        events = await journal_store.journal_of_call(session, row.integration_id, row.pbx_call_id)
        recording = await recording_store.get(session, call_id)
        people = {e.id: e for e in await directory.list_employees(session)}
        names = await directory.client_names(session, {row.client_id} if row.client_id else set())
    failed = journal_store.request_problems(events)
    wait_hours = services_of(request).settings.recording_wait_hours
    recording_status = recordings.status_of(row, recording, wait_hours=wait_hours, now=utcnow())
    return render(request, "call.html", row=row, legs=legs, events=events, recording=recording, people=people,
                  names=names, failed=failed, replayed=request.query_params.get("replayed"),
                  recording_status=recording_status)  # fmt: skip


@router.post("/calls/{call_id}/replay")
async def replay_call(call_id: IdPath, request: Request):
    await auth.require_role(request, "manager", "admin")
    await checked_form(request)
    report = await flows.replay(services_of(request), call_id=call_id)
    summary = f"{report.applied},{report.unchanged},{len(report.failing)}"
    return RedirectResponse(f"/calls/{call_id}?replayed={summary}", status_code=303)


@router.get("/calls/{call_id}/recording")
async def recording_file(call_id: IdPath, request: Request):
    """The kept recording, for the player (range requests, so it can seek)."""
    await auth.signed_in(request)
    return await recordings.response(services_of(request), call_id, request.headers.get("range"))


@router.post("/dial")
async def dial(request: Request):
    """Click-to-call from any number on any page."""
    user = await auth.signed_in(request)
    if not auth.csrf_ok(request, request.headers.get("x-csrf-token")):
        return JSONResponse({"error": "reload the page"}, status_code=403)
    try:
        phone = safejson.loads(await request.body()).get("phone", "")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return JSONResponse({"error": translate("bad_request", lang_of(request))}, status_code=400)
    lang = lang_of(request)
    try:
        placed = await flows.click_to_call(services_of(request), employee_id=user["id"], phone=str(phone))
    except flows.ClickToCallError as exc:  # in the user's words; the technical text one click away
        return JSONResponse({"error": translate(f"dial_{exc.reason}", lang), "detail": str(exc)}, status_code=400)
    except PbxError as exc:
        words = translate("dial_pbx_down" if exc.retryable else "dial_pbx_refused", lang)
        return JSONResponse({"error": words, "detail": str(exc)}, status_code=502)
    text = translate("calling_retry" if placed.retrying else "calling", lang)
    followed = placed.request_id if placed.retrying else None  # the page asks how it ended (GET /dial/ID)
    answer = {"message": text, "phone": display(placed.phone), "detail": placed.retrying, "request": followed}
    return JSONResponse(answer)


@router.get("/dial/{request_id}")
async def dial_outcome(request_id: IdPath, request: Request):
    """How a click-to-call the PBX did not take at once ended, for the employee who clicked (their page asks until
    it knows, on whichever page they are by then)."""
    user = await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        asked = await outbox_store.get(session, request_id)
    if asked is None or asked.action != "make_call" or asked.employee_id != user["id"]:
        raise HTTPException(404, "no such call request of yours")
    lang = lang_of(request)
    if asked.status == "pending":
        return JSONResponse({"status": "pending"})
    if asked.status == "done":
        return JSONResponse({"status": "done", "message": translate("calling", lang)})
    return JSONResponse({"status": "failed", "error": translate("dial_failed_for_good", lang), "detail": asked.error})


# ---- live call cards ----------------------------------------------------------------------------


@router.get("/live/stream")
async def live_stream(request: Request):
    """The signed-in employee's call-card messages (Server-Sent Events), while the session stands: a logout
    everywhere, a new password or role, a deactivation ends the stream within seconds."""
    user = await auth.signed_in(request)
    settings = services_of(request).settings
    per_employee, lifetime = settings.live_streams_per_employee, settings.live_stream_seconds
    check = auth.session_check(request)
    holder = Holder(f"employee:{user['id']}", per_employee, check, lifetime, settings.live_recheck_seconds)
    wanted = for_employee(user["id"])
    if user["away"]:  # stepped away: no card rings for them (the page opens the stream again when they are back)
        return event_stream(services_of(request).bus, lambda m: m["type"] != "CardShown" and wanted(m), holder)
    return event_stream(services_of(request).bus, wanted, holder)


@router.get("/cards")
async def my_cards(request: Request):
    """The calls whose card is the signed-in employee's now (a page opened, reloaded or navigated to shows them
    again: the speaker's card stays with the call)."""
    user = await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        ids = await call_store.cards_of(session, user["id"], utcnow() - ENDED_CARD)
    return JSONResponse({"calls": ids})


@router.get("/cards/{call_id}")
async def card(call_id: IdPath, request: Request):
    """The call card: who is calling, their manager, open deal, open tasks, last calls. While the call rings it is
    everyone's it was shown to; once answered, only the employee who talks keeps it (with a timer and a comment),
    until a while after the end: anyone else gets 204, and their browser takes the card away."""
    user = await auth.signed_in(request)
    async with services_of(request).db.read() as session:
        row = await call_store.get_call(session, call_id)
        if row is None:
            raise HTTPException(404, "no such call")
        talking = row.answered_at is not None and row.employee_id == user["id"]
        if row.answered_at is not None and not talking:
            return Response(status_code=204)
        # a client made for the number after the call came (from this card, or by the rules) is the call's too
        client_id = row.client_id or (await directory.owner_of(session, row.phone) if row.phone else None)
        client = await directory.get_client(session, client_id)
        manager = (
            await directory.get_employee(session, client.responsible_id) if client and client.responsible_id else None
        )
        deals = (await directory.deals_of(session, [client.id])).get(client.id, []) if client else []
        tasks = await directory.open_tasks_of_client(session, client.id) if client else []
        last, _ = (
            await call_store.list_calls(session, call_store.CallFilter(phone=row.phone), limit=6)
            if row.phone
            else ([], 0)
        )
    open_deal = next((d for d in deals if d.status == "active"), None)
    return render(request, "card.html", row=row, client=client, manager=manager, deal=open_deal, tasks=tasks,
                  last=[c for c in last if c.id != call_id][:5], talking=talking)  # fmt: skip


@router.post("/calls/{call_id}/comment")
async def comment(call_id: IdPath, request: Request):
    """The comment the employee writes on the call (on the card while they talk, or after): theirs to write if they
    talked (see web/access.py)."""
    user = await auth.signed_in(request)
    form = await checked_form(request)
    text = form.get("comment", "").strip()[:MAX_COMMENT] or None
    services = services_of(request)
    async with services.db.transaction() as session:
        call = await call_store.get_call(session, call_id)
        if call is None:
            raise HTTPException(404, "no such call")
        client = await directory.get_client(session, call.client_id)
        if not access.may_comment(user, call, client, services.settings.shared_crm):
            raise HTTPException(403, "not_yours_call")
        await call_store.set_comment(session, call_id, text)
    if request.headers.get("x-requested-with") == "fetch":  # the card's script: it says "saved" itself
        return JSONResponse({"comment": text})
    return back(request, f"/calls/{call_id}")


# ---- helpers ------------------------------------------------------------------------------------


ENDED_CARD = timedelta(minutes=2)  # an ended call's card stays this long for its speaker (app.js: ENDED_CARD_MS)
EARLIEST, LATEST = date(1970, 1, 1), date(2999, 12, 31)  # any call's day, with room on both sides of the calendar


def date_param(raw: str | None) -> date | None:
    """A day from the query string: none when unreadable (the filter is then off), a 400 past the bounds (the
    calendar's edges overflow in time zone arithmetic)."""
    try:
        day = date.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    if day is not None and not EARLIEST <= day <= LATEST:
        raise HTTPException(400, "date_out_of_range")
    return day


def page_of(q) -> int:
    """The page a list's query string asks for (0 first), within what paging reaches."""
    return min(parse_id(q.get("page")) or 0, MAX_PAGE)


def pager(q, page: int, total: int, size: int = PAGE) -> dict:
    """Links to a list's first, previous, next and last pages, and which page of how many this is."""
    last = max(0, (total - 1) // size)
    return {"number": page + 1, "count": last + 1,
            "first": with_query(q, page=0) if page else None, "prev": with_query(q, page=page - 1) if page else None,
            "next": with_query(q, page=page + 1) if page < last else None,
            "last": with_query(q, page=last) if page < last else None}  # fmt: skip


def with_query(query, **changes) -> str:
    return "?" + urlencode({**dict(query), **{k: str(v) for k, v in changes.items()}})
