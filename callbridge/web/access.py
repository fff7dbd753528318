"""Who may change what in the workspace: the per-object rule every page route that changes a client, a deal, a
task or a call's comment asks before it acts.

- Admins and managers (team leads) may change anything.
- An employee may change a client whose responsible manager they are, or that has none: its name, phones and
  deals, and may hand it over to a colleague; they may not make themselves responsible for a colleague's client
  (the PBX would then route that client's calls to them), nor close a colleague's deals.
- A task: the employee it is assigned to, or, when it is no one's, whoever may change its client.
- A call's comment: the employee who talked; when nobody did, whoever may change its client.

`CALLBRIDGE_SHARED_CRM=true` lets every employee change everything (a small team that shares all its clients). The
JSON API is the company's integration, not a person: an API key that may write acts for the company.
"""

from __future__ import annotations

from typing import Any

from ..store.tables import CallRow, Client, Task

User = dict[str, Any]  # auth.signed_in's: id, name, role
LEADS = ("admin", "manager")


def _lead(user: User, shared: bool) -> bool:
    return shared or user["role"] in LEADS


def may_change_client(user: User, client: Client | None, shared: bool = False) -> bool:
    """The client's own details and deals (no client: nothing to guard)."""
    return client is None or _lead(user, shared) or client.responsible_id in (None, user["id"])


def may_make_responsible(user: User, client: Client, responsible_id: int | None, shared: bool = False) -> bool:
    """Setting the client's responsible manager to `responsible_id`."""
    return responsible_id == client.responsible_id or may_change_client(user, client, shared)


def may_change_task(user: User, task: Task, client: Client | None, shared: bool = False) -> bool:
    if _lead(user, shared) or task.employee_id == user["id"]:
        return True
    return task.employee_id is None and may_change_client(user, client, shared)


def may_comment(user: User, call: CallRow, client: Client | None, shared: bool = False) -> bool:
    if _lead(user, shared) or call.employee_id == user["id"]:
        return True
    return call.answered_at is None and may_change_client(user, client, shared)
