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

BATCH = 2000  # rows per transaction: large enough to be fast, small enough that a server writes between


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


async def import_csv(services: Services, what: str, path: Path, console: Console) -> ImportReport:
    """Load `employees` or `clients` (name, phones, responsible), a batch per transaction, so a server using the
    same database writes between them."""
    report = ImportReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    add_batch = _add_employees if what == "employees" else _ClientBatches(services).add
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"importing {what}", total=len(rows))
        for start in range(0, len(rows), BATCH):
            batch = [(start + i + 2, row) for i, row in enumerate(rows[start : start + BATCH])]  # line 1: the header
            async with services.db.transaction() as session:
                await add_batch(session, batch, report)
            progress.update(task, advance=len(batch))
    return report


async def _add_employees(session, batch: list[tuple[int, dict[str, str]]], report: ImportReport) -> None:
    for line, row in batch:
        try:  # every check runs before the row's write, so a bad row writes nothing
            data = EmployeeIn.model_validate({k: v.strip() for k, v in row.items() if k and v and v.strip()})
            await directory.add_employee(session, **data.model_dump())
            report.imported += 1
        except (ValidationError, ValueError) as exc:
            report.errors.append((line, _reason(exc)))


class _ClientBatches:
    """Clients checked in memory and written a batch at a time (one query for the batch's taken phones, one
    insert each for the clients and their phones): a whole CRM's worth in seconds, not minutes."""

    def __init__(self, services: Services) -> None:
        self.region = services.settings.default_region
        self.responsible: dict[str, int | None] = {}  # employee key -> id, each asked of the store once
        self.phones: dict[str, int] = {}  # phones of this file -> the line that has it

    async def add(self, session, batch: list[tuple[int, dict[str, str]]], report: ImportReport) -> None:
        good: list[tuple[int, ClientIn]] = []
        for line, row in batch:
            try:
                good.append((line, await self._client(session, row)))
            except (ValidationError, ValueError) as exc:
                report.errors.append((line, _reason(exc)))
        wanted = [phone for _, client in good for phone in client.phones]
        taken = set(await directory.taken_phones(session, wanted)) if wanted else set()
        fresh = []
        for line, client in good:
            clash = [p for p in client.phones if p in taken or self.phones.get(p, line) != line]
            if clash:
                report.errors.append((line, f"phone already belongs to another client: {', '.join(clash)}"))
                continue
            self.phones |= dict.fromkeys(client.phones, line)
            fresh.append((client.name, client.phones, client.responsible_id))
        if fresh:
            await directory.add_clients_bulk(session, fresh)
        report.imported += len(fresh)

    async def _client(self, session, row: dict[str, str]) -> ClientIn:
        raw_phones = [p for p in (row.get("phones") or row.get("phone") or "").replace(",", ";").split(";")
                      if p.strip()]  # fmt: skip
        phones = []
        for raw in raw_phones:
            phone = normalize(raw, self.region)
            if phone is None:
                raise ValueError(f"{raw!r} is not a phone number")
            phones.append(phone)
        responsible_id = None
        if responsible := (row.get("responsible") or "").strip():
            if responsible not in self.responsible:
                self.responsible[responsible] = await directory.employee_by_key(session, responsible)
            responsible_id = self.responsible[responsible]
            if responsible_id is None:
                raise ValueError(f"no employee with login or extension {responsible!r}")
        name = (row.get("name") or "").strip()
        return ClientIn(name=name, phones=list(dict.fromkeys(phones)), responsible_id=responsible_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, directory.PhoneTaken):
        return f"phone already belongs to another client: {exc}"
    return str(exc)
