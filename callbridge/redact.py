"""Secrets stay out of logs: the parts of inbound URLs that authenticate a PBX, and credentials in any query
string, are masked in every log line. A log line is one line: line breaks and other control characters in what
it says (a peer's answer, a URL) are escaped, so nobody can write a line of their own into the log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127) if code != 9} | {10: "\\n", 13: "\\r"}
# any query parameter whose name ends as a credential's does (a PBX or script may put its token in the URL)
SECRET_IN_QUERY = r"(?i)[?&][^=&\s\"]*(?:token|key|secret|password|signature|auth)=(?P<secret>[^&#\s\"]+)"


class RedactSecrets(logging.Filter):
    """Masks the group named `secret` of each pattern wherever it appears in a record's message, arguments or
    traceback (uvicorn's access log prints every request's whole path; an error's text may hold a URL)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        super().__init__()
        self._patterns = [re.compile(p) for p in patterns]

    def clean(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub(lambda m: m.group(0)[: m.start("secret") - m.start()] + MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.clean(record.msg).translate(_CONTROL)
        if isinstance(record.args, tuple):
            record.args = tuple(self._arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:  # formatters print exc_text, made once, instead of exc_info
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
        return True

    def _arg(self, value: object) -> object:
        if isinstance(value, str):
            return self.clean(value).translate(_CONTROL)
        if isinstance(value, BaseException):  # its text is a peer's as often as ours
            return self.clean(str(value)).translate(_CONTROL)
        return value


def install(patterns: Iterable[str]) -> None:
    """Put the filter on every handler of the root and uvicorn loggers (records of child loggers reach handlers,
    not their parents' filters). Credentials in query strings are always masked."""
    redactor = RedactSecrets([SECRET_IN_QUERY, *patterns])
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "callbridge"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(redactor)
