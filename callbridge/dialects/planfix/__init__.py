"""Planfix "API for telephonies": the many PBXs built to integrate with Planfix connect to callbridge instead."""

from .. import hooks
from . import client, wire

HOOK = hooks.TokenHook(
    kind="planfix",
    token_field=wire.TOKEN_FIELD,
    parse=wire.parse,
    lookup_reply=wire.contact_reply,
    ping_reply=wire.ping_reply,
)
DIALECT = hooks.dialect(
    HOOK, title="PBX for the Planfix telephony API", make_call=client.make_call, enable=client.setup
)
