"""CSV import of employees and clients: good rows kept, bad rows reported with their line number."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from .api.schemas import ClientIn, EmployeeIn
from .domain.phones import normalize
from .services import Services
from .store import directory

BATCH = 500


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


async def import_csv(services: Services, what: str, path: Path, console: Console) -> ImportReport:
    """Load `employees` or `clients` (name, phones, responsible)."""
    report = ImportReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    add_row = _add_employee if what == "employees" else _add_client
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"importing {what}", total=len(rows))
        for start in range(0, len(rows), BATCH):
            async with services.db.transaction() as session:
                for offset, row in enumerate(rows[start : start + BATCH]):
                    line = start + offset + 2  # the header is line 1
                    try:  # every check runs before the row's first write, so a bad row writes nothing
                        await add_row(services, session, row)
                        report.imported += 1
                    except (ValidationError, ValueError) as exc:
                        report.errors.append((line, _reason(exc)))
            progress.update(task, advance=len(rows[start : start + BATCH]))
    return report


async def _add_employee(_services: Services, session, row: dict[str, str]) -> None:
    data = EmployeeIn.model_validate({k: v.strip() for k, v in row.items() if k and v and v.strip()})
    await directory.add_employee(session, **data.model_dump())


async def _add_client(services: Services, session, row: dict[str, str]) -> None:
    raw_phones = [p for p in (row.get("phones") or row.get("phone") or "").replace(",", ";").split(";") if p.strip()]
    phones = []
    for raw in raw_phones:
        phone = normalize(raw, services.settings.default_region)
        if phone is None:
            raise ValueError(f"{raw!r} is not a phone number")
        phones.append(phone)
    responsible_id = None
    if responsible := (row.get("responsible") or "").strip():
        responsible_id = await directory.employee_by_key(session, responsible)
        if responsible_id is None:
            raise ValueError(f"no employee with login or extension {responsible!r}")
    data = ClientIn(name=(row.get("name") or "").strip(), phones=phones, responsible_id=responsible_id)
    await directory.add_client(session, name=data.name, phones=data.phones, responsible_id=responsible_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, directory.PhoneTaken):
        return f"phone already belongs to another client: {exc}"
    return str(exc)
