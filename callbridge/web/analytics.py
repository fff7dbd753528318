"""The analytics page: a period's calls, per day, hour and employee, the missed calls recovered (returned, within
the SLA, how fast), and the PBX's own analytics fields; the same per employee as CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import flows
from ..domain.phones import display
from ..store import analytics, callbacks, directory
from . import auth, export
from .i18n import translate
from .pages import WORKSPACE, date_param, error_page, lang_of, render, services_of

router = APIRouter(**WORKSPACE)


SORTS = ("name", "calls", "answered", "missed", "missed_rate", "avg_wait", "avg_talk")
MAX_DAYS = 366


class RangeTooLong(Exception):
    """The figures are counted from every call of the period: at most MAX_DAYS of them."""


@dataclass(frozen=True)
class Period:
    name: str  # today, 7, 30 or custom
    since: date
    until: date  # the last day, included
    start: datetime  # the company's midnights around them
    end: datetime


def period_of(q, zone: ZoneInfo) -> Period:
    """Today, 7 or 30 days (the default), or from one date to another, in the company's days."""
    name, today = q.get("period", "30"), datetime.now(zone).date()
    since, until = date_param(q.get("since")), date_param(q.get("until"))
    if name != "custom" or not since:
        days = {"today": 1, "7": 7}.get(name, 30)
        name, since, until = (name if name in ("today", "7") else "30"), today - timedelta(days=days - 1), today
    until = max(until or today, since)
    if (until - since).days >= MAX_DAYS:
        raise RangeTooLong()
    start, end = (datetime.combine(d, datetime.min.time(), zone) for d in (since, until + timedelta(days=1)))
    return Period(name, since, until, start, end)


@router.get("/analytics")
async def analytics_page(request: Request):
    """A period's figures: today, 7 or 30 days (the default), or from one date to another."""
    await auth.signed_in(request)
    services, q = services_of(request), request.query_params
    zone = ZoneInfo(services.settings.timezone)
    try:
        chosen = period_of(q, zone)
    except RangeTooLong:
        return error_page(request, 400, "analytics_range_too_long")
    period, since, until = chosen.name, chosen.since, chosen.until
    recovery = await flows.recovery(services, chosen.start, chosen.end)
    async with services.db.read() as session:
        figures = await analytics.figures(session, chosen.start, chosen.end, zone)
        people = {e.id: e for e in await directory.list_employees(session)}
    sort = q.get("sort") if q.get("sort") in SORTS else "calls"

    def order(item):
        employee_id, person = item
        return (people[employee_id].name if employee_id in people else "") if sort == "name" else getattr(person, sort)

    rows = sorted(figures.per_employee.items(), key=order, reverse=sort != "name")
    peak = max([sum(v) for v in figures.per_day.values()] + [1])
    hour_peak = max([sum(v) for v in figures.per_hour] + [1])
    fields = list(figures.breakdown)  # the field shown: the one asked for, else a utm_ one, else the first
    field = q.get("field") if q.get("field") in fields else next((n for n in fields if n.startswith("utm_")),
                                                                 fields[0] if fields else None)  # fmt: skip
    return render(request, "analytics.html", f=figures, people=people, rows=rows, peak=peak, hour_peak=hour_peak,
                  day_series=[(day.strftime("%d.%m"), counts) for day, counts in figures.per_day.items()],
                  hour_series=[(str(hour), counts) for hour, counts in enumerate(figures.per_hour)],
                  period=period, since=since, until=until, sort=sort, field=field, recovery=recovery,
                  lines=sorted(recovery.per_line.items()), employee_name=lambda i: people[i].name if i in people else
                  translate("nobody", lang_of(request)), line_name=lambda n: display(n) if n else "—",
                  owed_link="/calls?" + urlencode({"owed": "1", "since": since, "until": until}))  # fmt: skip


@router.get("/analytics.csv")
async def analytics_csv(request: Request):
    """Per employee: what rang them, answered, missed, and of their missed calls, returned, within the SLA, the
    median time to call back, never returned."""
    await auth.signed_in(request)
    services, lang = services_of(request), lang_of(request)
    zone = ZoneInfo(services.settings.timezone)
    try:
        chosen = period_of(request.query_params, zone)
    except RangeTooLong:
        return error_page(request, 400, "analytics_range_too_long")
    recovery = await flows.recovery(services, chosen.start, chosen.end)
    async with services.db.read() as session:
        figures = await analytics.figures(session, chosen.start, chosen.end, zone)
        people = {e.id: e.name for e in await directory.list_employees(session)}
    keys = (
        "employee",
        "calls_rang",
        "answered_by_them",
        "missed_by_them",
        "callbacks_returned",
        "callbacks_within_sla",
        "callbacks_median",
        "callbacks_never",
    )
    lines = [export.csv_line([translate(key, lang) for key in keys])]
    for employee_id in sorted(set(figures.per_employee) | set(recovery.per_employee), key=lambda i: people.get(i, "")):
        person = figures.per_employee.get(employee_id) or analytics.Person()
        back = recovery.per_employee.get(employee_id) or callbacks.Callbacks()
        lines.append(
            export.csv_line(
                [
                    people.get(employee_id, ""),
                    person.calls,
                    person.answered,
                    person.missed,
                    back.returned,
                    back.returned_within_sla,
                    back.median_seconds_to_callback or "",
                    back.never_returned,
                ]
            )
        )
    filename = f"analytics-{chosen.since}-{chosen.until}.csv"
    return Response(
        "\ufeff" + "".join(lines),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
