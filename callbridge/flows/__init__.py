"""The one orchestrator, a module per path through the house: events, lookup, requests to PBXs, integrations.

Importing the package registers the outbox actions that requests.py defines.
"""

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
    ingest,
    reject,
    replay,
)
from .integrations import add_integration, check_integration, enable_integration, inbound_url, set_enabled, set_rules
from .lookup import lookup
from .requests import ClickToCall, ClickToCallError, SyncReport, click_to_call, sync_accounts

__all__ = [
    "BackfillReport", "CallSummary", "ClickToCall", "ClickToCallError", "Outcome", "ReplayReport", "SyncReport",
    "add_integration", "backfill", "backfill_all", "call_key_of", "call_summary", "check_integration", "click_to_call",
    "close_stale_calls", "enable_integration", "existing_employees", "group_members", "inbound_url", "ingest",
    "lookup", "reject", "replay", "set_enabled", "set_rules", "sync_accounts",
]  # fmt: skip
