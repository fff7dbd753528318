"""One phone normaliser for every inbound and stored number."""

from __future__ import annotations

import functools
import re

import phonenumbers

DEFAULT_REGION = "RU"

# Everything from the first word, '#', ',' or ';' on is an extension or a comment ("доб. 12", "(моб.)").
_TAIL = re.compile(r"[^\W\d_]|[#,;]")
_NOT_DIGIT = re.compile(r"\D")


def normalize(raw: object, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a real number, bare digits for a short extension, None when there is no number at all."""
    return _normalize(str(raw) if raw is not None else "", region)


@functools.lru_cache(maxsize=20_000)
def _normalize(text: str, region: str) -> str | None:
    """Cached: a call's number comes in each of its events and its lookup, and parsing it is the costly part."""
    text = text.strip()
    text = text.removeprefix("tel:").removeprefix("TEL:")
    if tail := _TAIL.search(text):
        text = text[: tail.start()]
    text = text.strip(" -.()/\t")
    digits = _NOT_DIGIT.sub("", text)
    if not digits:
        return None
    plus = text.startswith("+")
    if not plus and len(digits) > 2 and digits.startswith("00") and digits[2] != "0":
        text, plus = "+" + digits[2:], True  # 00 is the international prefix in most of the world
    number = _parsed(text, region)
    if number is not None and not plus and not phonenumbers.is_valid_number(number):
        # PBXs send E.164 without its "+" (442079460958): not a number of the region, it is an international one
        international = _parsed("+" + digits, None)
        if international is not None and phonenumbers.is_valid_number(international):
            number = international
    if number is not None and phonenumbers.is_possible_number(number):
        return f"+{number.country_code}{phonenumbers.national_significant_number(number)}"  # E.164
    return digits[:32]


def _parsed(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


MIN_PART = 3  # digits a part of a number needs to be searched for


def number_parts(text: str, region: str = DEFAULT_REGION) -> tuple[str, ...]:
    """The digit runs a stored E.164 number contains when it is the number a person typed part of, in any writing:
    "555-01-02" and "5550102" -> 5550102; "8 916 555" -> 8916555, and 7916555 (the national prefix written as the
    country code). Empty when the text holds fewer than MIN_PART digits, or letters (a name, not a number)."""
    if any(ch.isalpha() for ch in text):
        return ()
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < MIN_PART:
        return ()
    parts = [digits]
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.national_prefix if metadata else None
    if prefix and not text.lstrip().startswith("+") and digits.startswith(prefix):
        parts.append(f"{metadata.country_code}{digits[len(prefix):]}")
    return tuple(dict.fromkeys(parts))


def wire_digits(e164: str) -> str:
    """Digits only, as PBXs that reject a leading '+' want them."""
    return "".join(ch for ch in e164 if ch.isdigit())


def display(e164: str) -> str:
    """A number as people write it: +7 910 123-45-67."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
