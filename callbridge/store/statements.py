"""Statements run on every PBX event: compiled once by SQLAlchemy, then sent straight to the driver."""

from __future__ import annotations

import functools

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncSession,
)

from .codec import _dumps
from .postgres import PostgresReader, PostgresSession
from .sqlite import SqliteSession


def insert_for(session: AsyncSession, table):
    """INSERT with ON CONFLICT support on both engines we run on."""
    return _insert(session.bind.dialect.name)(table)


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


async def execute_hot(
    session: AsyncSession | PostgresSession | PostgresReader | SqliteSession, statement, params: dict | list[dict]
) -> list:
    """Run a statement built once, on a path every PBX event takes; the rows it returns (tuples, or asyncpg
    records, which index and unpack alike).

    The statement goes straight to the driver (sqlite3, asyncpg), with the SQL and the type conversions SQLAlchemy
    compiled for it on first use, skipping SQLAlchemy's execution machinery around it. Every column value must be
    given (no defaults are filled in), and IN lists are not expanded.
    """
    many = isinstance(params, list)
    if many and not params:
        return []
    driver = session.driver if isinstance(session, PostgresSession | PostgresReader) and not session.in_block else None
    if driver is None and not isinstance(session, SqliteSession):  # outside `transaction`, or in a savepoint's block
        result = await session.execute(statement, params)
        return list(result.all()) if statement.exported_columns else []
    sql, binds, converters = _compiled(statement, tuple(params[0] if many else params), session.bind.dialect)
    values = [_values(binds, row) for row in params] if many else _values(binds, params)
    if driver is not None:
        if many:
            await driver.executemany(sql, values)
            return []
        rows = await driver.fetch(sql, *values)
    else:
        cursor = session.cursor()
        if many:
            cursor.executemany(sql, values)
            return []
        rows = cursor.execute(sql, values).fetchall()
    if any(converters):
        return [tuple(v if c is None else c(v) for c, v in zip(converters, row, strict=True)) for row in rows]
    return rows


def _values(binds, row: dict) -> list:
    return [row[name] if convert is None else convert(row[name]) for name, convert in binds]


@functools.cache
def _compiled(statement, keys: tuple[str, ...], dialect):
    """The SQL, the bind names in order with their conversions, and the result conversions."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
             for name in compiled.positiontup]  # fmt: skip
    converters = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in statement.exported_columns]
    return compiled.string, binds, converters


def built_once(session: AsyncSession, build):
    """The statement `build(insert)` makes, built once per database dialect and executed with parameters:
    on the paths every PBX event takes, building a statement costs more than running it."""
    return _built_for(build, session.bind.dialect.name)


@functools.cache
def _built_for(build, dialect: str):
    return build(_insert(dialect))


def round_trips_cost(session) -> bool:
    """Whether each statement costs a round trip to a database server, so that statements that can be one are
    worth merging (PostgreSQL; SQLite runs them in this process)."""
    return session.bind.dialect.name != "sqlite"


# ---- PostgreSQL statements of many rows: one list parameter per column, read back as rows by `unnest` ----------


def columns_of(rows: list[dict], columns: dict[str, str]) -> list[list]:
    """Rows as one list per column of `columns` (name: PostgreSQL type, or "json"), JSON ones as their text."""
    return [[_dumps(r[name]) if kind == "json" else r[name] for r in rows] for name, kind in columns.items()]


def unnest(columns: dict[str, str], first: int) -> str:
    """The rows `columns_of` sent, from parameter `$first` on, as the set `given` (JSON columns come as text: cast
    them where they are written)."""
    kinds = ["text" if kind == "json" else kind for kind in columns.values()]
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(kinds, start=first))
    return f"unnest({arrays}) AS given({', '.join(columns)})"
