"""JSON from strangers: at most MAX_DEPTH deep and MAX_KEYS keys, finite numbers of sane length, valid text.

Python's json module happily returns what our database or our code cannot take: `1e400` as infinity, a lone
surrogate (`"\\ud800"`) that no UTF-8 column stores, integers of thousands of digits (an error past 4,300), and
nesting that ends in a RecursionError. Everything of that kind is refused here as one ValueError.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # objects and arrays inside each other
MAX_KEYS = 2_000  # keys and array items in the whole document
MAX_DIGITS = 30  # characters of one number


class JsonRefused(ValueError):
    """The text is not JSON we accept; the message says why."""


class NotJson(JsonRefused):
    """The text is not JSON at all (a syntax error)."""


def _number(text: str) -> int | float:
    if len(text) > MAX_DIGITS:
        raise JsonRefused("a number is too long")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise JsonRefused("a number is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON within the limits above, or raise JsonRefused."""
    try:
        data = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except RecursionError:
        raise JsonRefused(f"nested deeper than {MAX_DEPTH}") from None
    except JsonRefused:
        raise
    except ValueError as exc:  # JSONDecodeError, bytes that are not UTF-8
        raise NotJson(f"invalid JSON: {getattr(exc, 'msg', exc)}") from None
    _check(data)
    return data


def _check(data: Any) -> None:
    """Depth, size and text, walked without recursion."""
    pending, count = [(data, 1)], 0
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise JsonRefused(f"nested deeper than {MAX_DEPTH}")
        count += len(value)
        if count > MAX_KEYS:
            raise JsonRefused(f"more than {MAX_KEYS} keys and items")
        if isinstance(value, dict):
            for key in value:
                check_text(key)
            pending.extend((item, depth + 1) for item in value.values())
        else:
            pending.extend((item, depth + 1) for item in value)


def check_text(value: str) -> None:
    """Refuse text no database column stores: a lone surrogate or a NUL character."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused("text holds a lone surrogate (not valid Unicode)") from None
    if "\x00" in value:
        raise JsonRefused("text holds a NUL character")
