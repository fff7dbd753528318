"""The one orchestrator, a module per path through the house: events, lookup, requests to PBXs, integrations."""

from .. import outbox
from .batches import ingest
from .events import (
    BackfillReport,
    CallSummary,
    Outcome,
    ReplayReport,
    backfill,
    backfill_all,
    call_key_of,
    call_summary,
    close_stale_calls,
    existing_employees,
    group_members,
    reject,
    replay,
    rerun_rules,
)
from .integrations import (
    add_integration,
    check_integration,
    enable_integration,
    enable_without_setup,
    inbound_url,
    rotate_token,
    send_setup,
    set_enabled,
    set_rules,
)
from .analytics import my_missed, recovery
from .lookup import lookup
from .requests import (
    ClickToCall,
    ClickToCallError,
    SyncReport,
    click_to_call,
    fetch_accounts,
    place_call,
    sync_accounts,
)

# what each request to a PBX does, and how it is retried, for the outbox that makes them
outbox.register({
    "make_call": outbox.Action(place_call, outbox.Policy(attempts=3, first_retry=3, max_retry=10, expires=60)),
    "accounts": outbox.Action(fetch_accounts, outbox.Policy(attempts=8, first_retry=30)),
    "setup": outbox.Action(send_setup, outbox.Policy(attempts=8, first_retry=30)),
})  # fmt: skip

__all__ = [
    "BackfillReport", "CallSummary", "ClickToCall", "ClickToCallError", "Outcome", "ReplayReport", "SyncReport",
    "add_integration", "backfill", "backfill_all", "call_key_of", "call_summary", "check_integration", "click_to_call",
    "close_stale_calls", "enable_integration", "enable_without_setup", "existing_employees", "group_members",
    "inbound_url", "ingest", "lookup", "my_missed", "recovery", "reject", "replay", "rerun_rules", "rotate_token",
    "set_enabled", "set_rules", "sync_accounts",
]  # fmt: skip
