"""Fuzzing shared by the dialects' parser tests: any parameters either parse or are refused cleanly."""

from __future__ import annotations

from hypothesis import strategies as st

from callbridge.domain.pbx import WireError


def wire_params(names: list[str], words: list[str]):
    """Requests made of the dialect's own field names and words, random text, and oversized values."""
    values = st.one_of(
        st.sampled_from(words),
        st.text(max_size=40),
        st.text(alphabet="abc0123456789+-", min_size=90, max_size=400),
    )
    return st.dictionaries(st.sampled_from(names), values, max_size=10)


def parses_or_is_refused(parse, params, kinds) -> None:
    """The parser returns one of `kinds` or raises WireError (the dialect's 400), nothing else."""
    try:
        command = parse(params)
    except WireError:
        return
    assert isinstance(command, kinds)
