"""`callbridge serve --certfile --keyfile` speaks HTTPS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trustme

from callbridge.config import sqlite_url

from ..test_cli import free_port


def test_serve_over_https(tmp_path):
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    port = free_port()
    exe = str(Path(sys.executable).parent / "callbridge")
    env = os.environ | {"CALLBRIDGE_DATABASE_URL": sqlite_url(tmp_path / "tls.db")}
    server = subprocess.Popen([exe, "serve", "--port", str(port), "--certfile", str(cert), "--keyfile", str(key)],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=ca))
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json() == {"status": "ok", "store": "ok"}
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
            plain_refused = False
        except httpx.TransportError:
            plain_refused = True
        assert plain_refused  # no plain HTTP on the TLS port
    finally:
        server.terminate()
        server.wait(10)
