"""ITooLabs "REST API for CRM": MegaFon, Gravitel, Dom.ru and other cloud PBXs on that platform."""

from .. import hooks
from . import client, fake, routes, wire

DIALECT = hooks.dialect(
    routes.HOOK,
    fake=fake.render,
    title="Cloud PBX (ITooLabs: MegaFon, Gravitel, Dom.ru)",
    make_call=client.make_call,
    accounts=client.accounts,
    history=client.history,
    history_row=wire.history_row,
)
