"""How this PBX posts to us: the shared token-in-the-body hook, with this dialect's parser and replies."""

from .. import hooks
from . import wire

HOOK = hooks.TokenHook(
    kind="planfix",
    token_field=wire.TOKEN_FIELD,
    parse=wire.parse,
    lookup_reply=wire.contact_reply,
    ping_reply=wire.ping_reply,
)
