"""The analytics page: a period's calls, per day, hour and employee, and the PBX's own analytics fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request

from ..store import analytics, directory
from . import auth
from .pages import WORKSPACE, date_param, error_page, render, services_of

router = APIRouter(**WORKSPACE)


SORTS = ("name", "calls", "answered", "missed", "missed_rate", "avg_wait", "avg_talk")
MAX_DAYS = 366


@router.get("/analytics")
async def analytics_page(request: Request):
    """A period's figures: today, 7 or 30 days (the default), or from one date to another."""
    await auth.signed_in(request)
    services, q = services_of(request), request.query_params
    zone = ZoneInfo(services.settings.timezone)
    period, today = q.get("period", "30"), datetime.now(zone).date()
    since, until = date_param(q.get("since")), date_param(q.get("until"))
    if period != "custom" or not since:
        days = {"today": 1, "7": 7}.get(period, 30)
        period, since, until = (period if period in ("today", "7") else "30"), today - timedelta(days=days - 1), today
    until = max(until or today, since)
    if (until - since).days >= MAX_DAYS:  # the figures are counted from every call of the period
        return error_page(request, 400, "analytics_range_too_long")
    start, end = (datetime.combine(d, datetime.min.time(), zone) for d in (since, until + timedelta(days=1)))
    async with services.db.read() as session:
        figures = await analytics.figures(session, start, end, zone)
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
                  period=period, since=since, until=until, sort=sort, field=field,
                  owed_link="/calls?" + urlencode({"owed": "1", "since": since, "until": until}))  # fmt: skip
