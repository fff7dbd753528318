"""A small fake PBX on loopback: records what we send, answers each `cmd` as told, serves recordings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Reply = Response | Callable[[dict[str, str]], Response]


@dataclass
class FakePbx:
    """POST /api with `cmd` and `token` (401 on a wrong token, 200 with no body unless `replies` says
    otherwise); GET /records/<name> serves `files`, a one-time link only once."""

    token: str = "pbx-secret"
    replies: dict[str, Reply] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str, bool]] = field(default_factory=dict)  # name -> (body, type, once)
    received: list[dict[str, str]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    url: str = ""

    async def api(self, request: Request) -> Response:
        form = dict(await request.form())
        self.received.append(form)
        if form.get("token") != self.token:
            return JSONResponse({"error": "Invalid token"}, status_code=401)
        reply = self.replies.get(form.get("cmd", ""), Response(status_code=200))
        return reply if isinstance(reply, Response) else reply(form)

    async def record(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.downloads.append(name)
        if name not in self.files:
            return Response("gone", status_code=404)
        body, content_type, once = self.files[name]
        if once:
            del self.files[name]
        return Response(body, media_type=content_type)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api", self.api, methods=["POST"]),
                Route("/records/{name}", self.record, methods=["GET"]),
            ]
        )


def mp3(seconds: int = 1) -> bytes:
    """A small MPEG audio body: an ID3 header and MP3 frame headers, recognised as audio/mpeg."""
    return b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 413 * seconds
