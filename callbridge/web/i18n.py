"""Workspace texts from message catalogs: locale/<lang>/LC_MESSAGES/messages.po, read with Babel. Russian by
default, English on request; a third language is a third catalog. The messages are named by key (`calls`,
`rule_missed_call_tasks_hint`), plurals follow each language's rules, dates and amounts its conventions."""

from __future__ import annotations

import functools
import io
import re
from datetime import datetime
from pathlib import Path

from babel.dates import format_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALE_DIR = Path(__file__).with_name("locale")
DEFAULT = "ru"


@functools.cache
def _catalogs() -> dict[str, tuple[Catalog, Translations]]:
    """Every catalog in LOCALE_DIR, read once, with its gettext translations (compiled here: no build step)."""
    found = {}
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")):
        lang = po.parts[-3]
        with po.open("rb") as source:
            catalog = read_po(source, locale=lang)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        found[lang] = (catalog, Translations(compiled))
    return found


LANGUAGES = tuple(sorted(_catalogs(), key=lambda lang: (lang != DEFAULT, lang)))


def translations(lang: str) -> Translations:
    """The language's gettext translations, for Jinja's i18n extension (`ngettext` in templates)."""
    return _catalogs().get(lang, _catalogs()[DEFAULT])[1]


def translate(key: str, lang: str, **values) -> str:
    """The text for `key` in `lang`; the key itself when there is none (so a gap shows, not breaks). Only a catalog's
    own text is a format string: a key that is not one is shown as it is, whatever braces it holds."""
    catalog = _catalogs().get(lang, _catalogs()[DEFAULT])[0]
    message = catalog.get(key)
    if message is None or not isinstance(message.string, str):
        return key
    return message.string.format_map({name: str(value) for name, value in values.items()}) if values else message.string


def plural(key: str, count: int, lang: str) -> str:
    """`count` with the noun in the language's form for it: "1 звонок", "2 звонка", "5 звонков"."""
    return translations(lang).ngettext(key, f"{key}_plural", count) % {"num": count}


def moment(value: datetime, lang: str) -> str:
    """A date and time (already in the company's zone) as the language writes it: 01.12.2026 10:35, Dec 1, 2026."""
    return format_datetime(value, translate("datetime_format", lang), tzinfo=value.tzinfo, locale=lang)


def amount(value: float, lang: str) -> str:
    """A deal's amount in roubles, its digits grouped as the language groups them: 420 000 ₽, 420,000 ₽."""
    return format_decimal(value, "#,##0", locale=lang) + "\u00a0₽"


# What the server says in English (in the API, the log and the outbox) and the catalog key that says it to a person;
# the English stays one click away. The first pattern that matches wins.
EXPLAINED = [
    (re.compile(r"^(?:PBX|UIS) answered 40[13]:"), "error_pbx_token"),  # the API refused: its token
    (re.compile(r"^(?:PBX|UIS) answered 404:"), "error_pbx_address"),  # the API is not there
    (re.compile(r"(?:the )?PBX answered (?P<code>\d{3})"), "error_pbx_answered"),
    (re.compile(r"(?:PBX|UIS) did not answer"), "error_pbx_silent"),
    (re.compile(r"the receiver answered (?P<code>\d{3})"), "error_receiver_answered"),
    (re.compile(r"the receiver did not answer"), "error_receiver_silent"),
    (re.compile(r"larger than (?P<limit>\d+) bytes"), "error_too_large"),
    (re.compile(r"did not give an audio file"), "error_not_audio"),
    (re.compile(r"not an http\(s\) address"), "error_not_http"),
    (re.compile(r"download failed"), "error_download_failed"),
    (re.compile(r"could not store the recording"), "error_not_stored"),
    (re.compile(r"too late: nobody waits"), "error_too_late"),
    (re.compile(r"has no (?:PBX login|extension|UIS employee id)"), "error_no_pbx_login"),
    (re.compile(r"callbridge does not fetch from (?P<host>\S+): it is a"), "error_refused_address"),
]


def explain(text: str | None, lang: str) -> str:
    """A server message in the person's words, or the message itself when it is not one we know."""
    if not text:
        return ""
    for pattern, key in EXPLAINED:
        if found := pattern.search(text):
            return translate(key, lang, **found.groupdict())
    return text
