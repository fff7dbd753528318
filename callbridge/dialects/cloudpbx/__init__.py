"""ITooLabs "REST API for CRM": MegaFon, Gravitel, Dom.ru and other cloud PBXs on that platform."""

from ..base import Dialect
from . import client, routes

DIALECT = Dialect(
    kind=routes.KIND,
    title="Cloud PBX (ITooLabs: MegaFon, Gravitel, Dom.ru)",
    settings=client.CloudPbxSettings,
    router=routes.router,
    inbound_path=routes.inbound_path,
    make_call=client.make_call,
    accounts=client.accounts,
)
