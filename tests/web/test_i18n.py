"""The workspace's words come from message catalogs: every key the pages use is in every catalog, plurals follow
each language's rules, dates and amounts its conventions, and a third language is a third catalog."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callbridge.web import i18n

WEB = Path(i18n.__file__).parent
USED = re.compile(r"""\bt\(\s*['"]([a-z0-9_]+)['"]\s*[,)]|translate\(\s*['"]([a-z0-9_]+)['"]\s*[,)]""")  # whole keys


def keys_used() -> set[str]:
    files = [*WEB.glob("templates/*.html"), *WEB.glob("*.py")]
    return {a or b for path in files for a, b in USED.findall(path.read_text())}


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_key_the_pages_use_is_in_every_catalog(lang):
    catalog = i18n._catalogs()[lang][0]
    missing = sorted(key for key in keys_used() if catalog.get(key) is None)
    assert len(keys_used()) > 100 and missing == []


def test_plurals_follow_each_language():
    assert [i18n.plural("calls_count", n, "ru") for n in (1, 2, 5, 11, 21, 22, 112)] == [
        "1 звонок", "2 звонка", "5 звонков", "11 звонков", "21 звонок", "22 звонка", "112 звонков"]  # fmt: skip
    assert [i18n.plural("tasks_count", n, "en") for n in (1, 2)] == ["1 task", "2 tasks"]


def test_dates_and_amounts_as_each_language_writes_them():
    moment = datetime(2026, 12, 1, 10, 35, tzinfo=ZoneInfo("Europe/Moscow"))
    assert (i18n.moment(moment, "ru"), i18n.moment(moment, "en")) == ("01.12.2026 10:35", "Dec 1, 2026 10:35")
    assert (i18n.amount(420000, "ru"), i18n.amount(420000, "en")) == ("420\u00a0000\u00a0₽", "420,000\u00a0₽")


def test_a_third_language_is_a_catalog(tmp_path, monkeypatch):
    shutil.copytree(i18n.LOCALE_DIR, tmp_path / "locale")
    german = tmp_path / "locale" / "de" / "LC_MESSAGES"
    german.mkdir(parents=True)
    text = (tmp_path / "locale" / "en" / "LC_MESSAGES" / "messages.po").read_text()
    text = text.replace('"Language: en\\n"', '"Language: de\\n"').replace('msgstr "Calls"', 'msgstr "Anrufe"')
    (german / "messages.po").write_text(text)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    i18n._catalogs.cache_clear()
    try:
        assert i18n.translate("calls", "de") == "Anrufe" and i18n.plural("calls_count", 2, "de") == "2 calls"
    finally:
        monkeypatch.undo()
        i18n._catalogs.cache_clear()


@pytest.mark.parametrize("said, ru", [
    ("the PBX answered 404", "АТС ответила ошибкой 404"),
    ("PBX answered 401: Invalid token", "АТС не приняла ключ: проверьте токен в кабинете АТС и в настройках"),
    ("PBX answered 404: Not Found", "По адресу АТС ничего нет: проверьте адрес API в настройках"),
    ("PBX did not answer: ConnectError", "АТС не ответила: нет связи или она не успела"),
    ("the receiver answered 503: busy", "Получатель ответил ошибкой 503"),
    ("larger than 1000 bytes", "Файл больше разрешённых 1000 байт"),
    ("callbridge does not fetch from 10.0.0.5: it is a private address; an admin can allow it with X=10.0.0.5",
     "callbridge не обращается к 10.0.0.5: это внутренний адрес; администратор может разрешить его в "
     "CALLBRIDGE_OUTBOUND_ALLOW"),
    ("something nobody foresaw", "something nobody foresaw"),  # as it is, rather than wrong words
])  # fmt: skip
def test_server_messages_are_said_in_words(said, ru):
    assert i18n.explain(said, "ru") == ru
