"""The words every dialect and the core share: what a PBX asks and tells, how it refuses, who it knows.

Dialects turn their wire formats into these; the flows and the outbox act on them and never see a vendor's field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from .calls import CallEvent


class WireError(ValueError):
    """The request is not a valid command of the dialect: the dialect's 400."""


class PbxError(RuntimeError):
    """The PBX refused or could not be reached; the message is meant for the user.

    `retryable` says whether asking again later can help (no answer, 5xx, a rate limit), as opposed to a refusal
    that needs a person (a wrong token, an unknown employee); `retry_after` is how long the peer asked us to wait
    (seconds), `response_code` its HTTP status. (A webhook receiver refuses the same way.)
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 response_code: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.response_code = response_code


@dataclass(frozen=True)
class Lookup:
    """The PBX asks who is calling."""

    phone: str | None
    call_key: str | None = None


@dataclass(frozen=True)
class Events:
    """The PBX tells us something about calls."""

    command: str
    call_key: str | None
    events: list[CallEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Ping:
    """The PBX checks that we are there and configured."""


Command = Lookup | Events | Ping


@dataclass(frozen=True)
class Account:
    """An employee as the PBX lists them (for mapping PBX logins to employees)."""

    login: str
    name: str
    extension: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class PbxUser:
    """How the PBX may know an employee; each dialect picks the one its PBX wants."""

    login: str | None
    extension: str | None
    clid: str | None = None  # the caller ID the client should see, where the PBX lets us choose


class Person(Protocol):
    """An employee as far as routing a call needs one."""

    id: int
    name: str
    pbx_login: str | None
    extension: str | None


@dataclass(frozen=True)
class CallerInfo:
    """What a PBX needs to show and route an incoming call."""

    client_id: int | None  # None: no client known, only where to route (the lookup's deadline route)
    client_name: str | None
    responsible_id: int | None
    responsible_name: str | None
    responsible_login: str | None
    responsible_extension: str | None
    responsible_available: bool = True

    def routed_to(self, employee: Person | None) -> CallerInfo:
        """The same caller, routed to another employee (or to nobody: the PBX's own default)."""
        if employee is None:
            return replace(self, responsible_id=None, responsible_name=None, responsible_login=None,
                           responsible_extension=None, responsible_available=False)  # fmt: skip
        return replace(self, responsible_id=employee.id, responsible_name=employee.name,
                       responsible_login=employee.pbx_login, responsible_extension=employee.extension,
                       responsible_available=True)  # fmt: skip
