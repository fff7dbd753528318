"""How the JSON columns are written and read on both backends: orjson, since every PBX event writes a call's facts
and a request's parameters, and reads the facts back."""

from __future__ import annotations

import orjson


def _dumps(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()  # non-str keys as json.dumps keeps them


JSON_CODEC = {"json_serializer": _dumps, "json_deserializer": orjson.loads}  # for create_engine
