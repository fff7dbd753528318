"""Planfix "API for telephonies": the many PBXs built to integrate with Planfix connect to callbridge instead."""

from .. import hooks
from . import client, fake, routes

DIALECT = hooks.dialect(
    routes.HOOK,
    title="PBX for the Planfix telephony API",
    make_call=client.make_call,
    enable=client.setup,
    fake=fake.render,
)
