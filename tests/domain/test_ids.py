"""Ids as PBXs and people write them."""

from __future__ import annotations

from callbridge.domain.ids import own_id, parse_id


def test_an_id_key_carries_only_an_ascii_id():
    assert own_id("id:12") == 12 and parse_id("12") == 12
    for key in ("id:²", "id:١", "id:0", "id:-1", f"id:{2**31}", "id:", "12", "id:1 "):
        assert own_id(key) is None, key
