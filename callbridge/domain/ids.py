"""Ids as the outside world writes them: only ASCII digits, and never past what the database can hold."""

from __future__ import annotations

MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns on PostgreSQL


def parse_id(raw: object) -> int | None:
    """The id `raw` spells, or None: `²`, `١`, signs, spaces and numbers past MAX_ID are no ids."""
    if not isinstance(raw, str) or not (0 < len(raw) <= 10) or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


ID_KEY = "id:"  # a PBX user key that names our own employee id (dialects whose PBX knows our ids)


def own_id(key: str) -> int | None:
    """The employee id an `id:<n>` key carries (`id:²` carries none)."""
    return parse_id(key[len(ID_KEY) :]) if key.startswith(ID_KEY) else None
