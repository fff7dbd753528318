"""Reading flat request parameters (form or JSON) into typed values, with the dialect's 400 on bad input."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import wraps
from typing import TypeVar

from pydantic import ValidationError

from ..domain.pbx import WireError
from ..domain.phones import normalize
from .base import utc

MAX_VALUE = 2000  # characters; longer values are not something a PBX sends
T = TypeVar("T")


def guarded(parse: Callable[..., T]) -> Callable[..., T]:
    """Wrap a dialect's parse: oversized values and values our model cannot hold become WireError."""

    @wraps(parse)
    def wrapper(params: Mapping[str, str], *args, **kwargs) -> T:
        for name, value in params.items():
            if len(value) > MAX_VALUE:
                raise WireError(f"{name} is too long")
        try:
            return parse(params, *args, **kwargs)
        except ValidationError as exc:  # e.g. a 500-character call id
            problem = exc.errors()[0]
            raise WireError(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None

    return wrapper


def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise WireError(f"{name} is missing")
    return value


def seconds(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        number = float(raw)
    except ValueError:
        raise WireError(f"{name} must be a number of seconds, not {raw[:40]!r}") from None
    if not math.isfinite(number):  # 1e999, inf, nan
        raise WireError(f"{name} is out of range")
    value = round(number)
    if not 0 <= value <= 7 * 24 * 3600:
        raise WireError(f"{name} is out of range")
    return value


def flag(params: Mapping[str, str], name: str) -> bool:
    """A 0/1 flag (true/false accepted too); absent means 0."""
    raw = params.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise WireError(f"{name} must be 0 or 1, not {raw!r}")


def phone(params: Mapping[str, str], name: str, region: str, *, required: bool) -> str | None:
    """A client's number; a hidden one ("anonymous") is a call without a number, not an error."""
    raw = params.get(name, "").strip()
    if required and not raw:
        raise WireError(f"{name} is missing")
    return normalize(raw, region)


def hidden_phone(params: Mapping[str, str], name: str, region: str) -> dict[str, str]:
    """The raw value of a number we cannot read, kept as a call field so nothing is lost."""
    raw = params.get(name, "").strip()
    return {f"pbx_{name}": raw} if raw and normalize(raw, region) is None else {}


def word(value: str) -> str:
    """An enumerated value as we compare it: case, spaces, `_` and `-` do not matter (`No_Answer`, `in-progress`)."""
    return re.sub(r"[\s_-]+", "", value).lower()


def choice(params: Mapping[str, str], name: str, options: Mapping[str, T]) -> tuple[T | None, dict[str, str]]:
    """An enumerated value, read leniently; one outside `options` is kept as the call field `pbx_<name>`
    (and gives None), since a PBX's new or misspelled word must not lose the call. Missing: WireError."""
    value = required(params, name)
    try:
        return options[word(value)], {}
    except KeyError:
        return None, {f"pbx_{name}": value}


EARLIEST, LATEST = 1990, 2200  # years a PBX's clock can say (and a week of call added to it still fits)


def time_value(raw: str, formats: tuple[str, ...] = ("%Y%m%dT%H%M%SZ",)) -> datetime:
    """A UTC time in one of the given strptime formats, or ISO 8601, within the years a PBX can mean."""
    moment = None
    for fmt in formats:
        try:
            moment = utc(datetime.strptime(raw.strip(), fmt))
            break
        except ValueError:
            continue
    if moment is None:
        try:
            moment = utc(datetime.fromisoformat(raw.strip()))
        except (ValueError, OverflowError):
            raise WireError(f"{raw[:40]!r} is not a time") from None
    return plausible(moment, raw)


def plausible(moment: datetime, raw: str) -> datetime:
    if not EARLIEST <= moment.year <= LATEST:
        raise WireError(f"{raw[:40]!r} is out of range")
    return moment


def analytics(params: Mapping[str, str], prefix: str = "data_") -> dict[str, str]:
    """`data_<name>` parameters as analytics fields named `<name>`."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix) and len(k) > len(prefix)}
