"""UIS (CoMagic): notifications in, Call API out."""

from ..base import Dialect
from . import client, fake, routes, templates

DIALECT = Dialect(
    kind=routes.KIND,
    title="UIS (CoMagic)",
    settings=client.UisSettings,
    router=routes.router,
    inbound_path=lambda integration_id, token: f"/hooks/{routes.KIND}/{integration_id}/{token}",
    secret_in_path=r"/hooks/uis/\d+/(?P<secret>[^/?#\s\"]+)",
    make_call=client.make_call,
    instructions=templates.notification_bodies,
    replay=routes.replay,
    fake=fake.render,
    history=client.history,
    history_row=client.history_row,
)
