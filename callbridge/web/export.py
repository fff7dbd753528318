"""CSV for spreadsheets: a UTF-8 byte order mark so Excel reads Cyrillic, and no cell that a spreadsheet would run."""

from __future__ import annotations

import csv
import io

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what Excel and LibreOffice take for a formula


def csv_line(cells: list) -> str:
    """One CSV line; a text cell that would start a formula is quoted with a leading apostrophe (OWASP's advice),
    except a phone number in E.164, which is a plus and digits and nothing a spreadsheet can run."""
    out = io.StringIO()
    csv.writer(out).writerow(["" if c is None else _inert(c) if isinstance(c, str) else c for c in cells])
    return out.getvalue()


def _inert(text: str) -> str:
    if text.startswith(FORMULA_START) and not (text[:1] == "+" and text[1:].isdigit()):
        return "'" + text
    return text
