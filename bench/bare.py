"""The bare baseline: a Starlette endpoint that reads a form and answers JSON, with no database."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def contact(request: Request) -> JSONResponse:
    form = await request.form()
    return JSONResponse({"contact_name": "bare", "responsible": form.get("phone", "")[:3]})


app = Starlette(routes=[Route("/hooks/bare", contact, methods=["POST"])])
