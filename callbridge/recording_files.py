"""Where recordings' bytes are kept: a folder of this node (the embedded default), or an S3-compatible object
store that every node of one service shares (`CALLBRIDGE_RECORDINGS_URL=s3://bucket/prefix`).

Both take a finished file (downloaded or uploaded, checked to be audio) and answer a player's request for it,
range requests included, streamed both ways: a recording is never held in memory whole.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from starlette.responses import FileResponse, Response, StreamingResponse

CHUNK = 1 << 16


class StorageError(OSError):
    """The storage did not take a file (as a full disk would not): the recording is tried again later."""


class RecordingFiles(Protocol):
    def spool(self, name: str) -> Path:
        """A local path to write a file to before it is kept (on the same disk as the folder, where there is one)."""

    async def keep(self, name: str, spooled: Path, content_type: str) -> None:
        """Keep the spooled file as `name`; the spooled file is gone afterwards."""

    async def response(self, name: str, content_type: str, filename: str, range_header: str | None) -> Response | None:
        """The file as a player asked for it (whole or a byte range), or None if it is not there."""

    async def close(self) -> None: ...


class Folder:
    """Recordings as files in one folder of this machine."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def spool(self, name: str) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # calls' words: the owner's alone
        return self.path / f".{name}.part"

    async def keep(self, name: str, spooled: Path, content_type: str) -> None:
        spooled.replace(self.path / name)

    async def response(self, name: str, content_type: str, filename: str, range_header: str | None) -> Response | None:
        path = self.path / name
        if not path.is_file():
            return None
        return FileResponse(path, media_type=content_type, filename=filename)  # Starlette answers the range

    async def close(self) -> None:
        pass


class ObjectStore:
    """Recordings as objects under `s3://bucket/prefix`, through aiobotocore. Credentials, region and endpoint come
    the usual AWS ways (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3 for MinIO, Ceph
    and the like, which are addressed by path). The store's own answer to a Range header is passed on as it is."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"recordings URL must look like s3://bucket/prefix, not {url!r}")
        if importlib.util.find_spec("aiobotocore") is None:
            raise ValueError("keeping recordings in S3 needs aiobotocore: pip install 'callbridge[s3]'")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._stack = AsyncExitStack()
        self._client = None
        self._opening = asyncio.Lock()

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def client(self):
        async with self._opening:
            if self._client is None:
                from aiobotocore.config import AioConfig  # only an install that keeps recordings in S3 needs it
                from aiobotocore.session import get_session

                custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                config = AioConfig(s3={"addressing_style": "path" if custom_endpoint else "auto"},
                                   retries={"max_attempts": 3, "mode": "standard"})  # fmt: skip
                self._client = await self._stack.enter_async_context(get_session().create_client("s3", config=config))
        return self._client

    def spool(self, name: str) -> Path:
        handle, path = tempfile.mkstemp(prefix=f"callbridge-{name}.", suffix=".part")
        os.close(handle)
        return Path(path)

    async def keep(self, name: str, spooled: Path, content_type: str) -> None:
        from aiohttp import ClientError as ConnectionFailed
        from botocore.exceptions import BotoCoreError, ClientError

        client = await self.client()
        try:
            with spooled.open("rb") as body:
                await client.put_object(Bucket=self.bucket, Key=self.key(name), Body=body, ContentType=content_type)
        except (BotoCoreError, ClientError, ConnectionFailed) as exc:
            raise StorageError(f"the object store refused {name}: {exc}") from exc
        finally:
            spooled.unlink(missing_ok=True)

    async def response(self, name: str, content_type: str, filename: str, range_header: str | None) -> Response | None:
        client = await self.client()
        asked = {"Range": range_header} if range_header else {}
        try:
            found = await client.get_object(Bucket=self.bucket, Key=self.key(name), **asked)
        except client.exceptions.NoSuchKey:
            return None
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return Response(status_code=416, headers={"content-range": "bytes */*"})
            raise
        headers = {"accept-ranges": "bytes", "content-length": str(found["ContentLength"]),
                   "content-disposition": f'attachment; filename="{filename}"'}  # fmt: skip
        if found.get("ContentRange"):
            headers["content-range"] = found["ContentRange"]
        return StreamingResponse(_chunks(found["Body"]), status_code=206 if found.get("ContentRange") else 200,
                                 headers=headers, media_type=content_type)  # fmt: skip

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


async def _chunks(body):
    async with body:
        async for chunk in body.iter_chunks(CHUNK):
            yield chunk


def recording_files(settings) -> RecordingFiles:
    """The storage the settings name: the object store if a URL is set, else the folder."""
    return ObjectStore(settings.recordings_url) if settings.recordings_url else Folder(settings.recordings_dir)


def copy_into(source, target: Path) -> int:
    """Copy an open file (an upload) to `target`; returns its size. Run in a thread."""
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        return out.tell()
