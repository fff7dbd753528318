"""Number matching that always works: every real-world spelling of a number reaches its client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.domain.phones import display, normalize

SPELLINGS = {
    "+79101234567": [
        "79101234567", "+79101234567", "89101234567", "9101234567", "8 (910) 123-45-67", "+7 910 123-45-67",
        "+7 (910) 123 45 67", "7-910-123-45-67", "8-910-123-45-67", "8.910.123.45.67", "8(910)1234567",
        "(910) 123-45-67", "+7-910-123-45-67", "+7 910 1234567", "7 910 123 45 67", "8 910 123 45 67 (моб.)",
        "+7 910 123-45-67, доб 1", "+7 910 123 45 67 #123", "8 (910) 123 45 67 x123",
        "+7 (910) 123-45-67 доп. 3", "tel:+7-910-123-45-67", " 8 910 123 45 67 ", "910/123-45-67",
    ],
    "+74951234567": [
        "8 (495) 123-45-67", "+7 495 123 45 67", "+7(495)1234567", "495/123-45-67", "8-495-123-45-67 доб. 123",
        "+7 495 123-45-67 ext. 45", "74951234567",
    ],
    "+442071838750": ["+44 20 7183 8750", "+44 (0) 20 7183 8750", "0044 20 7183 8750", "810 44 20 7183 8750"],
    "+49301234567": ["+49 30 1234567", "00 49 30 1234567"],
    "+12125550123": ["+1 (212) 555-0123", "+1 212 555 0123"],
    "+375291234567": ["+375 29 123-45-67", "00375291234567"],
}  # fmt: skip
CASES = [(spelling, e164) for e164, spellings in SPELLINGS.items() for spelling in spellings]


def test_there_are_many_real_world_spellings():
    assert len(CASES) >= 30


@pytest.mark.parametrize("spelling, e164", CASES)
def test_every_spelling_normalises_to_the_same_number(spelling, e164):
    assert normalize(spelling) == e164


@pytest.mark.parametrize("raw", ["", "   ", "anonymous", "Скрытый номер", None, "unknown", "+", "()"])
def test_no_number_is_none(raw):
    assert normalize(raw) is None


@pytest.mark.parametrize("raw, digits", [("101", "101"), ("1001", "1001"), ("*55", "55")])
def test_short_numbers_stay_digits_and_never_look_like_a_client(raw, digits):
    assert normalize(raw) == digits and not normalize(raw).startswith("+")


# Foreign numbers as PBXs send them: E.164 without its "+"; each must reach the client stored with the "+".
BARE_INTERNATIONAL = {
    "442079460958": "+442079460958", "49301234567": "+49301234567", "375291234567": "+375291234567",
    "12125550123": "+12125550123", "380441234567": "+380441234567", "861012345678": "+861012345678",
    "33142685300": "+33142685300", "390612345678": "+390612345678", "34912345678": "+34912345678",
    "998901234567": "+998901234567", "77012345678": "+77012345678", "905321234567": "+905321234567",
}  # fmt: skip
# One digit short, one too many, one changed, a national number of another country: none of them is the client's.
NEAR_MISSES = ["44207946095", "4420794609581", "442079460959", "4930123456", "3752912345678", "1212555012",
               "121255501234", "3804412345", "20 7946 0958", "8 2079460958", "0442079460958",
               "7442079460958"]  # fmt: skip


@pytest.mark.parametrize("bare, e164", BARE_INTERNATIONAL.items())
def test_bare_international_digits_are_read_as_international(bare, e164):
    assert normalize(bare) == e164 == normalize(display(e164))


@pytest.mark.parametrize("raw", NEAR_MISSES)
def test_near_misses_match_no_stored_foreign_number(raw):
    assert normalize(raw) not in set(BARE_INTERNATIONAL.values())


def test_numbers_of_the_region_are_still_read_as_the_regions():
    assert normalize("9101234567") == "+79101234567" and normalize("4951234567") == "+74951234567"
    assert normalize("2079460958", "GB") == "+442079460958"


def test_region_decides_how_a_national_number_is_read():
    assert normalize("030 1234567", "DE") == "+49301234567"
    assert normalize("8 (910) 123-45-67", "RU") == "+79101234567"


@given(st.text(max_size=60))
def test_normalising_never_fails_and_is_stable(raw):
    once = normalize(raw)
    assert once is None or once.startswith("+") and once[1:].isdigit() or once.isdigit()
    if once is not None:
        assert normalize(once) == once


def test_display():
    assert display("+79101234567") == "+7 910 123-45-67" and display("101") == "101"
