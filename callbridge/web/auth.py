"""Workspace sign-in: argon2 off the event loop, failures throttled, every session checked against the store.

A session cookie names the employee and the session version it was made at; the role is read from the store on
every request, so a logout, a new password, a new role or a deactivation takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import os
import secrets
import stat
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from ..store import directory
from ..store.tables import Employee

_hasher = PasswordHasher()
ROLES = ("employee", "manager", "admin")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _matches(employee: Employee | None, password: str) -> bool:
    stored = employee.password_hash if employee and employee.password_hash else _dummy()
    try:
        return _hasher.verify(stored, password) and employee is not None and employee.password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _yield_to_calls() -> None:
    """Runs in each hashing thread: five steps below the server's CPU priority (argon2's lane threads inherit it),
    so a flood of sign-ins slows the sign-ins, not the calls, and still gets its share on a busy machine."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority here: hashing still runs
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + 5))


_hashing = ThreadPoolExecutor(2, "password-hashing", initializer=_yield_to_calls)  # threads start when first used


@functools.cache
def _dummy() -> str:
    """A hash to check an unknown login against, so it takes as long as a known one (made once, when first needed:
    every CLI command imports this module)."""
    return _hasher.hash("no one has this password")


class SignInGuard:
    """Checks passwords without stalling calls, and throttles failed sign-ins per login from one client address and
    per client address (a moving window kept in this process). A login is never locked for everyone: a stranger's
    failures from elsewhere do not keep its owner, at an address in good standing, from signing in."""

    def __init__(self, per_login: int, per_address: int, minutes: int = 15) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._login = RateLimitItemPerMinute(per_login, minutes)
        self._address = RateLimitItemPerMinute(per_address, minutes)

    async def password_matches(self, employee: Employee | None, password: str) -> bool:
        """Whether the password is the employee's, hashed in a thread (argon2 releases the GIL) so the loop
        goes on answering calls; the hashing runs even for no one, so timing tells nothing."""
        return await asyncio.get_running_loop().run_in_executor(_hashing, _matches, employee, password)

    async def allowed(self, login: str, address: str) -> bool:
        return await self._limiter.test(self._login, "login", login.lower(), address) and await self._limiter.test(
            self._address, "address", address
        )

    async def failed(self, login: str, address: str) -> None:
        await self._limiter.hit(self._login, "login", login.lower(), address)
        await self._limiter.hit(self._address, "address", address)


class LoginRequired(Exception):
    """Raised by pages when nobody is signed in; the app turns it into a redirect to /login."""


class Forbidden(Exception):
    """The signed-in employee's role does not allow this."""


def start_session(request: Request, employee: Employee) -> None:
    """A fresh session for the employee (nothing of the anonymous one survives but the language chosen)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session["user"] = {"id": employee.id, "v": employee.session_version}
    if lang is not None:
        request.session["lang"] = lang


async def signed_in(request: Request) -> dict:
    """The session's employee (id, name, role, as the store has them now), or LoginRequired."""
    known = request.session.get("user")
    if not isinstance(known, dict) or not isinstance(known.get("id"), int):
        raise LoginRequired()
    async with request.app.state.services.db.read() as session:
        employee = await directory.get_employee(session, known["id"])
    if employee is None or not employee.active or employee.session_version != known.get("v"):
        request.session.clear()
        raise LoginRequired()
    request.state.user = {"id": employee.id, "name": employee.name, "role": employee.role, "away": employee.away}
    return request.state.user


def session_check(request: Request) -> Callable[[], Awaitable[bool]]:
    """A check, for a connection held open, that the session it was opened with still stands: the same employee,
    active, with the same session version and role (read from the store each time it is asked)."""
    known, role, services = dict(request.session["user"]), request.state.user["role"], request.app.state.services

    async def still_stands() -> bool:
        async with services.db.read() as session:
            employee = await directory.get_employee(session, known["id"])
        return bool(employee and employee.active and employee.session_version == known["v"] and employee.role == role)

    return still_stands


async def require_role(request: Request, *roles: str) -> dict:
    user = await signed_in(request)
    if user["role"] not in roles:
        raise Forbidden()
    return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(request: Request, given: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and given) and hmac.compare_digest(expected.encode(), given.encode())


def local_path(target: str | None, fallback: str = "/calls") -> str:
    """Where to go after sign-in: a path on this site only (never `//host`, `/\\host` or another scheme)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return fallback
    return target if target.isprintable() else fallback


class KeyFileError(RuntimeError):
    """The session key file cannot be trusted or made."""


def secret_key(configured: str, path: Path) -> str:
    """The configured session key, or the one this install generated and keeps in `path` (owner-only)."""
    if configured:
        return configured
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path} can be read by others: run `chmod 600 {path}`, or delete it to make a new key "
                               "(every workspace session then ends)") from None  # fmt: skip
    else:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if len(key) < 32:
        raise KeyFileError(f"{path} holds no usable key: delete it to make a new one")
    return key
