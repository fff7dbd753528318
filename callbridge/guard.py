"""What every request passes first: body limits while the body is read, and a careful web app's headers."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
_DOCS = ("/docs", "/redoc")  # FastAPI's API pages load their scripts from a CDN and run inline ones


class BodyLimits:
    """Starlette's body limit on every route (bytes counted as they arrive, chunked bodies included), a larger one
    under the paths that take uploads; a declared Content-Length over the limit is refused before the app runs."""

    def __init__(self, app: ASGIApp, default: int, uploads: dict[str, int]) -> None:
        self._default = default, RequestBodyLimitMiddleware(app, default)
        self._uploads = [(prefix, (limit, RequestBodyLimitMiddleware(app, limit))) for prefix, limit in uploads.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self._default[1](scope, receive, send)
        path = scope["path"]
        limit, app = next((pair for prefix, pair in self._uploads if path.startswith(prefix)), self._default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # the rest of the body is read and dropped by the server, so the client can read this answer
            return await PlainTextResponse("Content Too Large", 413)(scope, receive, send)
        await app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class SecurityHeaders:
    """CSP without inline script, nosniff, no framing, a Referrer-Policy; over HTTPS (directly or through a trusted
    proxy, which sets the scheme) HSTS and `Secure` on every cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        https = scope.get("scheme") == "https"
        docs = scope["path"].startswith(_DOCS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if not docs:
                    headers.setdefault("content-security-policy", CSP)
                if https:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
                    for i, (name, value) in enumerate(message["headers"]):
                        if name == b"set-cookie" and b"; secure" not in value.lower():
                            message["headers"][i] = (name, value + b"; Secure")
            await send(message)

        await self.app(scope, receive, send_with_headers)
