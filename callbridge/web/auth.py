"""Workspace sign-in: argon2 password hashes, signed-cookie sessions, CSRF tokens for every form."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request

from ..store.tables import Employee

_hasher = PasswordHasher()
ROLES = ("employee", "manager", "admin")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(employee: Employee | None, password: str) -> bool:
    """Whether the password is the employee's; the hashing runs even for no one, so timing tells nothing."""
    stored = employee.password_hash if employee and employee.password_hash else _DUMMY
    try:
        return _hasher.verify(stored, password) and employee is not None and employee.password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY = _hasher.hash("no one has this password")


class LoginRequired(Exception):
    """Raised by pages when nobody is signed in; the app turns it into a redirect to /login."""


class Forbidden(Exception):
    """The signed-in employee's role does not allow this."""


def signed_in(request: Request) -> dict:
    """The session's employee (id, name, role), or LoginRequired."""
    user = request.session.get("user")
    if not user:
        raise LoginRequired()
    return user


def require_role(request: Request, *roles: str) -> dict:
    user = signed_in(request)
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


def secret_key(configured: str, folder: Path = Path(".")) -> str:
    """The configured session key, or one generated once and kept beside the database."""
    if configured:
        return configured
    path = folder / ".callbridge-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
