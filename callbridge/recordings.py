"""Keep call recordings: download the PBX's links to our storage, temporary links first, with retries."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import filetype
import httpx
from fastapi import HTTPException
from starlette.responses import Response

from . import metrics, outbound
from .recording_files import copy_into
from .store import recordings as recording_store
from .store.tables import Recording

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("callbridge.recordings")

AUDIO_TYPES = {
    "audio/mpeg",
    "audio/x-wav",
    "audio/ogg",
    "video/mp4",
    "audio/mp4",
    "audio/x-m4a",
    "audio/webm",
}
LEASE = timedelta(minutes=10)  # how long a claimed download is left to its worker


def status_of(call, recording: Recording | None, *, wait_hours: float, now: datetime) -> str | None:
    """What a call's recording is, as the workspace and the API say it: our download's status, or `pending` while
    the PBX said it recorded the call and no link came yet, `missing` once that is `wait_hours` after the call ended
    (some PBXs say "recorded" on every call). Derived when read, so a link that comes later is still kept."""
    if recording is not None:
        return recording.status
    if not call.recording_expected or call.recording_url:
        return None
    overdue = call.ended_at is not None and now - call.ended_at > timedelta(hours=wait_hours)
    return "missing" if overdue else "pending"


@dataclass
class FetchError(Exception):
    reason: str
    final: bool  # retrying cannot help

    def __str__(self) -> str:
        return self.reason


def audio_type(head: bytes) -> filetype.Type | None:
    """The audio format by content (mp3, mp4, wav, ogg), whatever the name or the header claims."""
    kind = filetype.guess(head)
    return kind if kind is not None and kind.mime in AUDIO_TYPES else None


def retry_delay(settings, attempts: int) -> timedelta:
    """Exponential backoff with jitter, so many failed links do not all come back at once."""
    base = min(settings.recording_retry_seconds * 2 ** (attempts - 1), 3600.0)
    return timedelta(seconds=base * random.uniform(0.5, 1.5))


async def fetch_due(services: Services, now: datetime, limit: int = 5) -> int:
    """Try the recordings that are due; returns how many were tried."""
    async with services.db.transaction() as session:
        due = await recording_store.claim_due(session, now, LEASE, limit)
    for recording in due:
        await _keep(services, recording, now)
    return len(due)


async def _keep(services: Services, recording: Recording, now: datetime) -> None:
    settings = services.settings
    attempts = recording.attempts + 1
    try:
        name, content_type, size = await _download(services, recording)
    except FetchError as exc:
        final = exc.final or attempts >= settings.recording_attempts
        if final:
            metrics.FAILURES.labels("recording").inc()
        log.warning("recording of call %s: %s%s", recording.call_id, exc, " (giving up)" if final else "")
        values = {
            "status": "failed" if final else "queued",
            "attempts": attempts,
            "error": exc.reason,
            "next_attempt_at": now + retry_delay(settings, attempts),
        }
    else:
        values = {"status": "kept", "attempts": attempts, "error": None, "file": name,
                  "content_type": content_type, "size": size}  # fmt: skip
    async with services.db.transaction() as session:
        await recording_store.mark(session, recording.call_id, recording.url, **values)


async def _download(services: Services, recording: Recording) -> tuple[str, str, int]:
    if not recording.url.lower().startswith(("http://", "https://")):
        raise FetchError("the link is not an http(s) address", final=True)
    files = services.recording_files
    partial = files.spool(str(recording.call_id))
    async with services.db.read() as session:
        integration = await services.integration(await recording_store.integration_of(session, recording.call_id))
    limit = services.settings.recording_max_bytes
    http = services.http_client(integration.settings if integration else None, max_answer=limit + 1)
    try:
        size, head = await _stream_to(http, recording, partial, limit)
        kind = audio_type(head)
        if kind is None:
            raise FetchError("the link did not give an audio file (mp3, mp4, wav, ogg)", final=True)
        name = f"{recording.call_id}.{kind.extension}"
        try:
            await files.keep(name, partial, kind.mime)
        except OSError as exc:  # a full disk, an object store that does not answer: tried again later
            raise FetchError(f"could not store the recording: {exc.__class__.__name__}", final=False) from None
        return name, kind.mime, size
    finally:
        partial.unlink(missing_ok=True)


async def _stream_to(http: httpx.AsyncClient, recording: Recording, target: Path, limit: int) -> tuple[int, bytes]:
    size, head = 0, b""
    try:
        async with http.stream("GET", recording.url, follow_redirects=True) as response:
            if response.status_code != 200:
                gone = response.status_code in (404, 410)
                client_error = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
                raise FetchError(
                    f"the PBX answered {response.status_code}",
                    final=(gone and recording.temporary) or (client_error and not gone),
                )
            if int(response.headers.get("content-length") or 0) > limit:
                raise FetchError(f"larger than {limit} bytes", final=True)
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(f"larger than {limit} bytes", final=True)
                    head += chunk[: max(0, 262 - len(head))]
                    out.write(chunk)
    except outbound.Refused as exc:
        raise FetchError(str(exc), final=True) from None
    except httpx.HTTPError as exc:
        raise FetchError(f"download failed: {exc.__class__.__name__}", final=False) from None
    return size, head


async def keep_upload(services: Services, call_id: int, upload: BinaryIO, kind: filetype.Type) -> None:
    """Store an uploaded recording (already checked to be audio) as the call's recording, copied in a thread."""
    files = services.recording_files
    name = f"{call_id}.{kind.extension}"
    spooled = files.spool(str(call_id))
    try:
        size = await asyncio.to_thread(copy_into, upload, spooled)
        await files.keep(name, spooled, kind.mime)
    finally:
        spooled.unlink(missing_ok=True)
    async with services.db.transaction() as session:
        await recording_store.keep_upload(session, call_id, file=name, content_type=kind.mime, size=size)


async def response(services: Services, call_id: int, range_header: str | None = None) -> Response:
    """The call's kept recording (range requests work), or a 404 that says why not."""
    async with services.db.read() as session:
        recording = await recording_store.get(session, call_id)
    found = None
    if recording is not None and recording.status == "kept" and recording.file:
        suffix = recording.file.rsplit(".", 1)[-1]
        found = await services.recording_files.response(recording.file, recording.content_type,
                                                        f"call-{call_id}.{suffix}", range_header)  # fmt: skip
    if found is None:
        raise HTTPException(404, "no recording kept for this call" + (f" ({recording.status})" if recording else ""))
    return found
