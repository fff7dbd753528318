"""Two nodes behind a load balancer; one is killed with SIGKILL in the middle of PBX traffic. Every request that
got a 2xx is kept once, lookups keep answering through the other node, a webhook delivery the dead node held is
taken over after its lease and delivered once, and cards keep reaching the browsers of the living node."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import pytest
from standardwebhooks import Webhook as Verifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callbridge.store import directory, integrations

from ..helpers import live_listener, serve_app, serve_process
from .test_two_nodes import shared_settings
from .test_workers import incoming

pytestmark = pytest.mark.usefixtures("postgres")

CALLS = 40  # calls of three events each, posted by PARALLEL senders as PBXs would
PARALLEL = 4


class Balancer:
    """What a load balancer does here, in a few lines of asyncio: each connection goes to the next node that
    accepts it, so a dead node's share moves to the living one."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = [(url.split(":")[1].strip("/"), int(url.rsplit(":", 1)[1])) for url in nodes]
        self._turn = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _forward(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        for _ in self.nodes:
            host, port = self.nodes[self._turn % len(self.nodes)]
            self._turn += 1
            try:
                node_in, node_out = await asyncio.open_connection(host, port)
                break
            except OSError:
                continue
        else:
            client_out.close()
            return
        await asyncio.gather(_pipe(client_in, node_out), _pipe(node_in, client_out))

    async def stop(self) -> None:
        self._server.close()


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            target.write(chunk)
            await target.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        target.close()


@dataclass
class HangingReceiver:
    """A webhook receiver whose first delivery never gets an answer in time; later ones are verified and kept."""

    secret: str = ""
    first: threading.Event = field(default_factory=threading.Event)  # set in the receiver's own thread
    hung: list[str] = field(default_factory=list)
    got: list[str] = field(default_factory=list)  # webhook-ids answered 200

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        Verifier(self.secret).verify(body, dict(request.headers))
        if not self.hung:
            self.hung.append(request.headers["webhook-id"])
            self.first.set()
            await asyncio.sleep(60)
            return Response(status_code=503)
        self.got.append(request.headers["webhook-id"])
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


async def test_a_node_killed_mid_traffic_loses_and_doubles_nothing(services, database_url, tmp_path, s3):
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy")
        await directory.add_client(session, name="Рога и копыта", phones=["+79101234567"], responsible_id=andy.id)
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
        watched = await integrations.add_integration(session, kind="cloudpbx", name="PBX 2", settings={})
        key = await integrations.add_api_key(session, "tests")
    auth = {"Authorization": f"Bearer {key}"}
    receiver = HangingReceiver()
    shared = shared_settings(s3, outbox_lease_seconds="8")
    fresh = httpx.Limits(max_keepalive_connections=0)  # a connection per request, as the balancer spreads them
    async with AsyncExitStack() as stack:
        receiver_url = stack.enter_context(serve_app(receiver.app()))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(10, read=60), limits=fresh))

        def node(name: str) -> tuple[str, subprocess.Popen]:
            (tmp_path / name).mkdir()
            return stack.enter_context(serve_process(database_url, tmp_path / name, **shared))

        # A alone takes a call whose webhook delivery the receiver holds unanswered: the row is A's
        a, node_a = node("a")
        subscription = {"url": f"{receiver_url}/hook", "events": ["call.ringing"], "integration_id": watched.id}
        hook = (await http.post(f"{a}/api/webhooks", headers=auth, json=subscription)).json()
        receiver.secret = hook["secret"]
        assert (await http.post(f"{a}/hooks/cloudpbx/{watched.id}", data=incoming("held", watched.token))).is_success
        assert await asyncio.to_thread(receiver.first.wait, 10)
        b, _ = node("b")
        balancer = Balancer([a, b])
        front = await balancer.start()
        cards: list[dict] = []
        stream = await live_listener(http, f"{b}/api/live", key, cards)  # a browser's stream on B
        acknowledged: list[tuple[str, str]] = []

        async def send(path: str, form: dict) -> None:
            """As a PBX: until a 2xx comes, the same request again."""
            while True:
                try:
                    if (await http.post(f"{front}{path}", data=form)).is_success:
                        acknowledged.append((form["callid"], form["type"]))
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

        async def pbx_line(first: int) -> None:
            for n in range(first, CALLS, PARALLEL):
                for event in ("INCOMING", "ACCEPTED", "COMPLETED"):
                    form = incoming(f"c{n}", pbx.token) | {"type": event, "status": "Success", "duration": "9"}
                    await send(f"/hooks/cloudpbx/{pbx.id}", form)

        async def kill_a() -> None:
            """In the middle of the traffic, with the webhook delivery still held."""
            while len(acknowledged) < CALLS:
                await asyncio.sleep(0.01)
            node_a.kill()
            await asyncio.to_thread(node_a.wait)

        await asyncio.gather(kill_a(), *(pbx_line(i) for i in range(PARALLEL)))
        assert node_a.returncode == -9 and len(acknowledged) == 3 * CALLS

        # lookups keep answering through the living node
        for n in range(10):
            contact = await http.post(f"{front}/hooks/cloudpbx/{pbx.id}", data={
                "cmd": "contact", "phone": "79101234567", "callid": f"l{n}", "crm_token": pbx.token})  # fmt: skip
            assert contact.json() == {"contact_name": "Рога и копыта", "responsible": "andy"}

        # cards keep reaching the browser on B
        before = len(cards)
        assert (await http.post(f"{front}/hooks/cloudpbx/{pbx.id}", data=incoming("late", pbx.token))).is_success
        for _ in range(100):
            if any(m["type"] == "CardShown" for m in cards[before:]):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no card for the late call on B: {cards[-3:]}")

        # the delivery the dead node held is taken over after its lease and delivered once, under its own id
        for _ in range(400):
            if receiver.got:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert receiver.got == receiver.hung

        # every acknowledged event kept once: one complete call each
        calls = (await http.get(f"{b}/api/calls", headers=auth, params={"limit": 500})).json()["items"]
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
        await balancer.stop()
    ours = sorted((c["pbx_call_id"], c["state"], c["result"]) for c in calls if c["pbx_call_id"].startswith("c"))
    assert ours == sorted((f"c{n}", "ended", "answered") for n in range(CALLS))
