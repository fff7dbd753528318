"""What every request passes first: body limits while the body is read, and a careful web app's headers."""

from __future__ import annotations

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_CSP = [(b"content-security-policy", CSP.encode())]
# The API pages (Swagger UI, ReDoc) are served from the package (fastapi-offline), but start with an inline script
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_DOCS_CSP = [(b"content-security-policy", DOCS_CSP.encode())]
_HSTS = [(b"strict-transport-security", b"max-age=31536000")]
_DOCS = ("/docs", "/redoc")


class BodyLimits:
    """A body limit on every route, a larger one for multipart bodies under the paths that take uploads (only a
    file part is ever large; a form or JSON body there has the default limit). A declared Content-Length over the
    limit is refused before the app runs; one within it is all the server lets through (HTTP/1.1 framing), so only
    a body of undeclared length (chunked) needs counting as it arrives: Starlette's body limit does that."""

    def __init__(self, app: ASGIApp, default: int, uploads: dict[str, int]) -> None:
        self._app = app
        self._default = default, RequestBodyLimitMiddleware(app, default)
        self._uploads = [(prefix, (limit, RequestBodyLimitMiddleware(app, limit))) for prefix, limit in uploads.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        path = scope["path"]
        uploads = self._uploads if _multipart(scope) else ()
        limit, counting = next((pair for prefix, pair in uploads if path.startswith(prefix)), self._default)
        declared = _content_length(scope)
        if declared is None:
            return await counting(scope, receive, send)
        if declared > limit:
            # the rest of the body is read and dropped by the server, so the client can read this answer
            return await PlainTextResponse("Content Too Large", 413)(scope, receive, send)
        await self._app(scope, receive, send)


def _multipart(scope: Scope) -> bool:
    return any(name == b"content-type" and value.lower().startswith(b"multipart/") for name, value in scope["headers"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the server refuses one that is not digits
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
        extra = _HEADERS + (_DOCS_CSP if scope["path"].startswith(_DOCS) else _CSP) + (_HSTS if https else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if https:
                    headers = [(n, v + b"; Secure" if n == b"set-cookie" and b"; secure" not in v.lower() else v)
                               for n, v in headers]  # fmt: skip
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
