"""A small fake ITooLabs PBX on loopback: records what we send, answers as the spec says."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakePbx:
    token: str = "pbx-secret"
    accounts: list[dict] = field(default_factory=list)
    make_call_reply: Response | None = None
    received: list[dict[str, str]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        form = dict(await request.form())
        self.received.append(form)
        if form.get("token") != self.token:
            return JSONResponse({"error": "Invalid token"}, status_code=401)
        if form.get("cmd") == "accounts":
            return JSONResponse(self.accounts)
        if form.get("cmd") == "makeCall":
            if not form.get("user") or not form.get("phone", "").isdigit():
                return JSONResponse({"error": "Invalid parameters"}, status_code=400)
            return self.make_call_reply or Response(status_code=200)
        return JSONResponse({"error": "Invalid parameters"}, status_code=400)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/sys/crm_api.wcgp", self.endpoint, methods=["POST"])])
