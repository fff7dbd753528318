"""The database schema (SQLAlchemy 2 declarative). Alembic migrations are made from this."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

from ..domain.ids import MAX_ID

_ZERO = timedelta(0)
_SQLITE_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # as SQLAlchemy's SQLite dialect writes a datetime


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every engine (SQLite forgets the zone, so we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            """SQLAlchemy's SQLite text for the value (it runs a dozen times on every PBX event: a UTC value is
            written as it is, where `astimezone` and `isoformat` took twice as long)."""
            if value is None:
                return None
            if value.utcoffset() != _ZERO:
                value = self.process_bind_param(value, dialect)
            return _SQLITE_TEXT % (value.year, value.month, value.day, value.hour, value.minute, value.second,
                                   value.microsecond)  # fmt: skip

        return process

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EntityId = Annotated[int, Field(ge=1, le=MAX_ID)]  # an id as the outside world may send one


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Integration(Base):
    """A connected PBX: its dialect, the token it sends us, and how we reach it."""

    __tablename__ = "integrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(128), unique=True)
    previous_token: Mapped[str | None] = mapped_column(String(128))  # still accepted after a rotation, until:
    previous_token_until: Mapped[datetime | None]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    automation: Mapped[dict[str, Any]] = mapped_column(default=dict)  # see automation.Rules
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Employee(Base):
    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(32), index=True)
    pbx_login: Mapped[str | None] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(16), default="employee")
    active: Mapped[bool] = mapped_column(default=True)
    away: Mapped[bool] = mapped_column(default=False)  # calls are not routed to them (holiday, sick leave)
    clid: Mapped[str | None] = mapped_column(String(32))  # the number clients see when this employee calls out
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2; None: cannot sign in
    # a workspace session names the version it was made at: a logout, a new password, a new role or a
    # deactivation bumps it, and every session made before ends
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmployeeGroup(Base):
    """A group of employees (sales, support...); an employee can belong to several."""

    __tablename__ = "employee_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("employee_groups.id", ondelete="CASCADE"), primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)


_MADE_BY_CALL = "created_by_call_id IS NOT NULL"


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (  # read on every call event; almost every client has none, so only the few that do
        Index("ix_clients_created_by_call", "created_by_call_id", postgresql_where=text(_MADE_BY_CALL),
              sqlite_where=text(_MADE_BY_CALL)),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16), default="client")  # client | lead
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    created_by_call_id: Mapped[int | None]  # provenance only (no FK: calls already point at clients)
    external_id: Mapped[str | None] = mapped_column(String(200))  # its id in the company's own CRM (lookup source)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClientPhone(Base):
    """One of a client's numbers, in E.164: the caller lookup is one indexed query on it."""

    __tablename__ = "client_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    e164: Mapped[str] = mapped_column(String(32), unique=True)


class Deal(Base):
    __tablename__ = "deals"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="active")
    amount: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32), default="manual")  # manual | missed_call | ticket
    status: Mapped[str] = mapped_column(String(16), default="open")
    department: Mapped[str | None] = mapped_column(String(200))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None]  # a missed call's task: the call's end plus the integration's time to call back
    closed_at: Mapped[datetime | None]


class CallRow(Base):
    """A call's derived view for queries, plus the engine's facts to fold the next event into."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("integration_id", "pbx_call_id"),
        Index("ix_calls_started", "started_at", "id"),
        Index("ix_calls_phone", "phone"),
        Index("ix_calls_open", "state", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    pbx_call_id: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str | None] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(32))
    virtual_number: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(String(16))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"), index=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"), index=True)
    started_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    wait_seconds: Mapped[int | None]
    talk_seconds: Mapped[int | None]
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_expected: Mapped[bool] = mapped_column(default=False)
    problem: Mapped[str | None] = mapped_column(Text)  # why a CRM rule failed on this call, until it works
    comment: Mapped[str | None] = mapped_column(Text)  # what the employee who talked wrote on the card
    sequence: Mapped[int] = mapped_column(default=0, server_default="0")  # grows with every change (webhooks)
    tags: Mapped[list[str]] = mapped_column(default=list)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    facts: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recording(Base):
    """A call's recording: the PBX's link, and our own copy once it is downloaded."""

    __tablename__ = "recordings"
    __table_args__ = (Index("ix_recordings_due", "status", "next_attempt_at"),)

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    temporary: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16))  # queued | kept | failed
    file: Mapped[str | None] = mapped_column(String(300))
    content_type: Mapped[str | None] = mapped_column(String(100))
    size: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Interaction(Base):
    """A contact record on a client: one per call, kept in step with the call."""

    __tablename__ = "interactions"

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    at: Mapped[datetime | None]
    direction: Mapped[str | None] = mapped_column(String(8))
    result: Mapped[str | None] = mapped_column(String(16))
    talk_seconds: Mapped[int | None]
    recording_url: Mapped[str | None] = mapped_column(Text)


class LegRow(Base):
    __tablename__ = "call_legs"
    __table_args__ = (UniqueConstraint("call_id", "employee_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    employee_key: Mapped[str] = mapped_column(String(100))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16))
    rang_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class OutboxRequest(Base):
    """A request we must make of a PBX (place a call, `setup`, list accounts): kept first, then delivered by
    whichever worker claims it, retried with backoff until it is done, refused or out of time."""

    __tablename__ = "outbox"
    __table_args__ = (
        # what is due, receiver by receiver (no webhook: a PBX's): a receiver that is down is skipped without
        # reading its queue, however long that has grown
        Index("ix_outbox_receiver_due", "webhook_id", "status", "next_attempt_at"),
        # a double click finds the request it repeats; a webhook delivery has no subject and no entry here
        Index("ix_outbox_subject", "action", "subject", "created_at", sqlite_where=text("subject IS NOT NULL"),
              postgresql_where=text("subject IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # the PBX it is made of, or (a webhook delivery) the integration of the call it tells about, if any
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[int | None] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))  # make_call | setup | accounts | webhook
    response_code: Mapped[int | None]  # the HTTP status of the last attempt, where there was one
    subject: Mapped[str | None] = mapped_column(String(200))  # what repeats of one request share (a double click)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="SET NULL"))  # who asked
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)  # also the lease of an attempt under way
    expires_at: Mapped[datetime | None]  # past it the request is pointless (nobody waits for a call any more)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxAttempt(Base):
    """One delivery attempt of an outbox request and how it went."""

    __tablename__ = "outbox_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))  # done | retry | failed
    detail: Mapped[str | None] = mapped_column(Text)
    response_code: Mapped[int | None]


class Webhook(Base):
    """A receiver of our events (Standard Webhooks): its URL, the event types it wants, its signing secrets."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(default=list)
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    secret: Mapped[str] = mapped_column(String(200))  # whsec_<base64>
    previous_secret: Mapped[str | None] = mapped_column(String(200))  # still signs beside the new one after rotate
    previous_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    failing_since: Mapped[datetime | None]  # the first of the failed attempts since the last success
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundRequest(Base):
    """The journal: every authenticated request from a PBX, kept before it is applied."""

    __tablename__ = "inbound_requests"
    __table_args__ = (
        UniqueConstraint("integration_id", "dedupe_key"),
        Index("ix_inbound_call", "integration_id", "call_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    command: Mapped[str | None] = mapped_column(String(32))
    call_key: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]]
    reply: Mapped[dict[str, Any] | None]  # what we answered, where the answer carries data (lookups)
    status: Mapped[str] = mapped_column(String(16))  # applied | answered | rejected | failed
    error: Mapped[str | None] = mapped_column(Text)
    repeats: Mapped[int] = mapped_column(default=0)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(default=False, server_default=false())  # GET and HEAD only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]  # written at most once a minute per key
    revoked_at: Mapped[datetime | None]


class LookupSource(Base):
    """The company's own system, asked who is calling when callbridge does not know the number (one at most)."""

    __tablename__ = "lookup_source"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))  # signs our requests (Standard Webhooks), as webhooks are
    cache_seconds: Mapped[int] = mapped_column(default=300)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
