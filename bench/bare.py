"""The bare baseline: Starlette endpoints with no database, doing only what HTTP itself costs.

POST /hooks/bare reads a form and answers JSON (the lookup's and the ingest's floor); GET /live is a
Server-Sent Events stream and POST /publish sends one message to every open stream (the call card's floor).
POST /receive is a webhook receiver that takes anything (204).
"""

import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

streams: set[asyncio.Queue] = set()


async def contact(request: Request) -> JSONResponse:
    form = await request.form()
    return JSONResponse({"contact_name": "bare", "responsible": form.get("phone", "")[:3]})


async def live(_request: Request) -> StreamingResponse:
    async def events():
        queue: asyncio.Queue = asyncio.Queue()
        streams.add(queue)
        try:
            yield ": connected\n\n"
            while True:
                yield await queue.get()
        finally:
            streams.discard(queue)

    return StreamingResponse(events(), media_type="text/event-stream")


async def publish(request: Request) -> JSONResponse:
    form = await request.form()
    frame = f"event: CardShown\ndata: {json.dumps({'type': 'CardShown', 'employee': form.get('user', '')})}\n\n"
    for queue in streams:
        queue.put_nowait(frame)
    return JSONResponse({})


async def receive(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/receive", receive, methods=["POST"]),
        Route("/hooks/bare", contact, methods=["POST"]),
        Route("/live", live),
        Route("/publish", publish, methods=["POST"]),
    ]
)
