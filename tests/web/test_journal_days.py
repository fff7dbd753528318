"""The journal's date filter: days as the company counts them, not as UTC does."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from callbridge.config import Settings
from callbridge.web.pages import _journal_filter


def test_the_journal_s_days_are_the_company_s():
    where = _journal_filter(SimpleNamespace(settings=Settings()), {"since": "2026-12-02", "until": "2026-12-02"})
    assert where.since == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)  # midnight in Moscow
    assert where.until == datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
