"""The outbox process `serve` starts beside the server (callbridge.outbox_process); not a command for people."""

from __future__ import annotations

import asyncio
import logging
import os

from ..outbox_process import NICENESS

if __name__ == "__main__":
    os.nice(NICENESS)  # before the server's parts are imported: they take a second
    from ..app import outbox_worker
    from ..config import Settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s")
    asyncio.run(outbox_worker(Settings()))
