"""Settings from the environment (CALLBRIDGE_*) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLBRIDGE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./callbridge.db"
    public_url: str = "http://127.0.0.1:8080"  # how PBXs reach us: the base of every inbound URL we print
    default_region: str = "RU"  # how numbers without a country code are read
    pbx_timeout_seconds: float = 10.0  # click-to-call and sync requests to a PBX
    click_dedupe_seconds: float = 5.0  # a second click on the same number within this joins the first call
    settle_seconds: int = 90  # a call with no ringing phone and no news for this long is over (missed)
    abandon_seconds: int = 4 * 3600  # any call with no news for this long is over
    sweep_interval_seconds: float = 15.0
    max_body_bytes: int = 1_000_000  # any request body; a recording upload may be recording_max_bytes
    timezone: str = "Europe/Moscow"  # how the workspace shows times
    secret_key: SecretStr = SecretStr("")  # signs workspace sessions; shared by every node of one service
    secret_key_file: str = ""  # where a generated key is kept; empty: beside the SQLite file, or ./ on PostgreSQL
    login_failures_per_login: int = 10  # failed sign-ins per 15 minutes before that login waits
    login_failures_per_address: int = 50  # ... and before that client address waits
    trusted_proxies: str = ""  # addresses whose X-Forwarded-For/-Proto are believed (comma-separated; not *)
    outbound_allow: str = ""  # hosts and CIDRs callbridge may fetch from although private (comma-separated)
    metrics_token: SecretStr = SecretStr("")  # if set, /metrics wants `Authorization: Bearer <it>`
    header_timeout_seconds: float = 10.0  # a client must send its request's headers within this
    body_timeout_seconds: float = 20.0  # and must not pause longer than this while sending the body,
    body_min_rate_bytes: int = 10_000  # nor, past that grace, send it slower than this many bytes a second
    max_connections: int = 4096  # open connections per server process; past it new requests get 503
    max_connections_per_address: int = 512  # of them, what one client address may hold (trusted proxies excepted)
    shared_crm: bool = False  # every employee may change every client, deal, task and comment (else: their own)
    live_streams_per_employee: int = 8  # a workspace's card streams (tabs) per employee; the oldest closes past it
    live_streams_per_key: int = 32  # /api/live streams per API key; the oldest closes past it
    live_stream_seconds: float = 3600.0  # a stream then ends, and EventSource connects again
    live_recheck_seconds: float = 10.0  # a stream's credential is read again this often (it ends within this)
    store_wait_seconds: float = 10.0  # a write waits this long for another process's lock on the SQLite file, then
    # the request gets 503 (PBXs send it again): nothing is acknowledged that is not written
    lookup_deadline_ms: int = 300  # past it the PBX is told "unknown" (or the default route): a call never waits
    recordings_dir: str = "./recordings"  # where downloaded call recordings are kept (one node's own folder)
    recordings_url: str = ""  # s3://bucket/prefix: recordings in an S3-compatible store every node shares instead
    keep_recordings: bool = True  # download every recording; temporary links are always downloaded
    recording_max_bytes: int = 200_000_000
    recording_attempts: int = 8  # then the recording is marked failed, with the reason
    recording_retry_seconds: float = 30.0  # first retry; doubles each time, up to an hour, with jitter
    recording_poll_seconds: float = 2.0
    recording_wait_hours: float = 24.0  # a recording the PBX announced but never linked is `missing` after this
    backfill_minutes: float = 30.0  # fetch PBX call history this often (0: never), to catch calls missed while down
    lookup_journal_seconds: float = 0.5  # caller lookups are journaled in batches this often
    integration_cache_seconds: float = 5.0  # integrations are read on every PBX request
    outbox_poll_seconds: float = 1.0  # how often the outbox worker looks for requests due
    outbox_apart: bool = False  # the outbox worker runs in a process of its own, at a lower CPU priority (serve
    # does so unless told --outbox-in-process): webhook deliveries never take the CPU from a PBX request
    outbox_lease_seconds: float = 120.0  # a request under way belongs to its node this long (longer than any
    # PBX or webhook timeout); a node that dies holding it, another node takes it over after this
    workers: int = 1  # server processes sharing the database (serve --workers sets it); rate limits are shared

    @property
    def live_streams(self) -> int:
        """Live streams a process holds at most: a quarter of its connections, the rest stay the PBXs'."""
        return max(1, self.max_connections // 4)

    @field_validator("trusted_proxies")
    @classmethod
    def _no_wildcard(cls, value: str) -> str:
        if "*" in value:
            raise ValueError(
                "`*` would believe an X-Forwarded-For any client writes (sign-in throttling counts that address): "
                "list the proxies' addresses, e.g. CALLBRIDGE_TRUSTED_PROXIES=127.0.0.1"
            )
        return value


def sqlite_url(path: str) -> str:
    return f"sqlite+aiosqlite:///{path}"


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite database URL (none for PostgreSQL or an in-memory database)."""
    if database_url.startswith("sqlite") and ":///" in database_url:
        database = database_url.split(":///", 1)[1].split("?", 1)[0]
        if database and database != ":memory:":
            return Path(database)
    return None


def key_file(settings: Settings) -> Path:
    """Where this install keeps its generated session key: beside its data."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    database = sqlite_path(settings.database_url)
    return database.parent / ".callbridge-secret" if database else Path(".callbridge-secret")
