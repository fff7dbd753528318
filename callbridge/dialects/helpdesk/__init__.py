"""HelpDeskEddy "telephony through API" channel: PBXs built for it post to
`/api/v2/telephony/calls/@<channelKey>`; moving to callbridge only changes the domain."""

from ..base import Dialect
from . import fake, routes

DIALECT = Dialect(
    kind=routes.KIND,
    title="HelpDeskEddy telephony channel",
    settings=routes.HelpdeskSettings,
    router=routes.router,
    inbound_path=routes.channel_path,
    secret_in_path=r"/telephony/calls/(?:@|%40)\d+-(?P<secret>[^/?#\s\"]+)",  # @ as sent or percent-encoded
    uploads_under="/api/v2/telephony/calls/",
    default_rules=lambda settings: {"ticket_per_call": True, "ticket_department": settings.get("department")},
    replay=routes.replay,
    fake=fake.render,
)
