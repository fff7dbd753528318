"""What the JSON API reads and returns (this is its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from ..store.tables import EntityId


class ORM(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LegOut(ORM):
    employee_key: str = Field(description="the PBX's name for the employee (login or extension)")
    employee_id: int | None
    state: str
    rang_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None


class CallOut(ORM):
    id: int
    integration_id: int
    pbx_call_id: str
    direction: str | None
    phone: str | None
    virtual_number: str | None
    state: str
    result: str | None
    employee_id: int | None
    client_id: int | None
    deal_id: int | None
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    wait_seconds: int | None
    talk_seconds: int | None
    recording_url: str | None = Field(description="the PBX's link")
    recording_status: Literal["pending", "missing", "queued", "kept", "failed"] | None = Field(
        default=None,
        description="pending: recorded, link not sent yet; missing: no link came within "
        "CALLBRIDGE_RECORDING_WAIT_HOURS of the call's end (one that comes later is still kept); queued: "
        "downloading; kept: ours at /api/calls/{id}/recording; failed: see recording_error",
    )
    recording_error: str | None = None
    problems: list[str] = Field(
        default_factory=list, description="what failed on this call: CRM rules, the recording, PBX requests"
    )
    comment: str | None = Field(None, description="what the employee who talked wrote on the call card")
    tags: list[str]
    fields: dict[str, Any]
    legs: list[LegOut] = []
    sequence: int = Field(description="grows with every change of the call: of two copies, the higher is newer")


class EventOut(ORM):
    id: int
    received_at: datetime
    command: str | None
    status: str
    error: str | None
    repeats: int
    params: dict[str, Any]
    reply: dict[str, Any] | None


class CallDetail(CallOut):
    events: list[EventOut]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class EmployeeIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    extension: str | None = Field(default=None, max_length=32)
    pbx_login: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200)
    role: Literal["employee", "manager", "admin"] = "employee"


class EmployeeOut(ORM):
    id: int
    name: str
    extension: str | None
    pbx_login: str | None
    email: str | None
    role: str
    active: bool
    away: bool
    clid: str | None


class EmployeePatch(BaseModel):
    """Change some of an employee's fields; `away` keeps calls from being routed to them."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    extension: str | None = Field(default=None, max_length=32)
    pbx_login: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200)
    role: Literal["employee", "manager", "admin"] | None = None
    active: bool | None = None
    away: bool | None = None
    clid: str | None = Field(default=None, max_length=32, description="the number clients see when they call out")

    @model_validator(mode="after")
    def _no_null_where_a_value_is_needed(self) -> EmployeePatch:
        nulls = [name for name in ("name", "role", "active", "away") if name in self.model_fields_set
                 and getattr(self, name) is None]  # fmt: skip
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    employee_ids: list[EntityId] = Field(default_factory=list, max_length=500)


class GroupOut(BaseModel):
    id: int
    name: str
    employee_ids: list[int]


class IntegrationOut(BaseModel):
    id: int
    kind: str
    name: str
    enabled: bool
    inbound_url: str = Field(description="where the PBX posts; a secret it carries (UIS, helpdesk) shown as `***`")


class IntegrationSecrets(BaseModel):
    """What a PBX authenticates with: shown when revealed or rotated, by a key that may write, never in a list."""

    id: int
    token: str = Field(description="the token the PBX sends (`crm_token`, `planfix_token`), or the URL's secret")
    inbound_url: str
    previous_token_valid_until: datetime | None = Field(
        None, description="after a rotation, the token before it is still accepted until then"
    )


class RotationIn(BaseModel):
    grace_hours: float = Field(24.0, ge=0, le=24 * 30, description="how long the old token is still accepted")


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=300)
    phones: list[str] = Field(default_factory=list, max_length=20)
    responsible_id: EntityId | None = None


class DealOut(ORM):
    id: int
    title: str
    status: str
    amount: int | None
    created_at: datetime


class ClientOut(ORM):
    id: int
    name: str
    kind: str
    phones: list[str]
    responsible_id: int | None
    deals: list[DealOut] = []


class HistoryEntry(BaseModel):
    """A call in a client's history: a contact record, or an entry in a deal."""

    call_id: int
    at: datetime | None
    direction: str | None
    employee_id: int | None
    result: str | None
    talk_seconds: int | None
    deal_id: int | None
    recording: str | None = Field(description="our copy of the recording (`/api/calls/{id}/recording`), once kept")
    recording_status: str | None = Field(description="as on the call: pending, missing, queued, kept, failed")


class DealHistory(DealOut):
    calls: list[HistoryEntry]


class ClientHistory(BaseModel):
    """What the CRM rules wrote about a client: a contact record per call, and the calls added to each deal."""

    client: ClientOut
    contact_records: list[HistoryEntry]
    deals: list[DealHistory]


class TaskOut(ORM):
    id: int
    title: str
    kind: str
    status: str
    department: str | None
    employee_id: int | None
    client_id: int | None
    call_id: int | None
    phone: str | None
    created_at: datetime
    due_at: datetime | None = Field(description="when it should be done (a missed call's task: when to call back by)")
    closed_at: datetime | None


class ClickToCallIn(BaseModel):
    employee_id: EntityId
    phone: str = Field(min_length=1, max_length=64)
    integration_id: EntityId | None = None


class ClickToCallOut(BaseModel):
    status: Literal["calling_employee", "already_calling", "retrying"] = "calling_employee"
    message: str
    integration_id: int
    employee_id: int
    phone: str
    pbx_call_id: str | None
    outbox_id: int  # follow it at /api/outbox/{id}


class OutboxAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    at: datetime
    outcome: str
    detail: str | None


class OutboxOut(BaseModel):
    """A request callbridge makes of a PBX, and how it went."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    integration_id: int | None
    action: str
    employee_id: int | None
    status: Literal["pending", "done", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    expires_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[OutboxAttemptOut] = []


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="who uses the key")
    read_only: bool = Field(False, description="GET and HEAD only")


class ApiKeyOut(ORM):
    id: int
    name: str
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown this once; only its hash is kept")


# ---- webhooks -----------------------------------------------------------------------------------

EventType = Literal["call.ringing", "call.answered", "call.ended", "call.missed", "call.recording_ready",
                    "task.created", "task.closed", "client.created"]  # fmt: skip


class WebhookIn(BaseModel):
    url: HttpUrl
    events: list[EventType] | None = Field(None, description="the event types to send; none given: all of them")
    integration_id: EntityId | None = Field(None, description="only this integration's calls")


class WebhookPatch(BaseModel):
    url: HttpUrl | None = None
    events: list[EventType] | None = None
    integration_id: EntityId | None = None
    enabled: bool | None = Field(None, description="switch it on again after it was switched off for failing")


class WebhookOut(ORM):
    id: int
    url: str
    events: list[str]
    integration_id: int | None
    enabled: bool
    failing_since: datetime | None = Field(description="failing in a row since then; after 5 days it is switched off")
    disabled_reason: str | None
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="verify signatures with it (Standard Webhooks, `whsec_` + base64); shown on "
        "creation and rotation only"
    )


class DeliveryAttemptOut(ORM):
    number: int
    at: datetime
    outcome: str
    response_code: int | None
    detail: str | None


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="the `webhook-id` header: the same in every attempt")
    type: str
    status: Literal["pending", "done", "failed"]
    attempts: int
    response_code: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    attempt_log: list[DeliveryAttemptOut] = []


class WebhookEvent(BaseModel):
    """What each delivery's body is."""

    type: EventType
    timestamp: datetime
    data: dict[str, Any] = Field(
        description="call events: the call as `GET /api/calls/{id}` returns it, with its "
        "`sequence`; task events: the task; client events: the client"
    )


class LookupSourceIn(BaseModel):
    url: HttpUrl
    cache_seconds: int = Field(300, ge=0, le=7 * 24 * 3600, description="how long an answer (known or not) is kept")


class LookupSourceOut(ORM):
    url: str
    cache_seconds: int


class LookupSourceSet(LookupSourceOut):
    secret: str = Field(description="our requests are signed with it (Standard Webhooks); shown when set only")
