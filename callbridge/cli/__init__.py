"""The `callbridge` command. A command's module is imported when that command runs, not before: the server's
parts take a second or two to import, and `callbridge --help` should answer at once."""

from __future__ import annotations

import importlib
import os
from typing import Any

import typer
from typer.core import TyperGroup

# name: (module, its Typer app, the one line `callbridge --help` shows: the command's own first docstring line)
COMMANDS = {
    "serve": ("callbridge.cli.commands", "app", "Run the server (SQLite ./callbridge.db unless --database-url says "
              "otherwise)."),
    "migrate": ("callbridge.cli.commands", "app", "Create or upgrade the database schema."),
    "demo": ("callbridge.cli.commands", "app", "Load demo employees, clients with phones and managers, deals, a "
             "demo integration and an API key."),
    "simulate": ("callbridge.cli.commands", "app", "Play a realistic call against a running server, as the "
                 "integration's PBX would send it."),
    "replay": ("callbridge.cli.commands", "app", "Run journaled PBX requests through again: the ones that failed "
               "are applied, the rest change nothing."),
    "import": ("callbridge.cli.commands", "app", "Import employees or clients from CSV; bad rows are reported by "
               "line and skipped."),
    "password": ("callbridge.cli.commands", "app", "Set an employee's workspace password (their open sessions "
                 "end)."),
    "integration": ("callbridge.cli.integration", "integration_app", "Connect PBXs: each integration has its own "
                    "inbound URL and token."),
    "apikey": ("callbridge.cli.apikey", "apikey_app", "Keys for the JSON API (Authorization: Bearer KEY)."),
    "webhook": ("callbridge.cli.webhook", "webhook_app", "Signed webhooks: call, task and client events "
                "POSTed to your CRM."),
    "lookup-source": ("callbridge.cli.lookup_source", "lookup_source_app", "Ask your CRM who is calling when "
                      "callbridge does not know the number."),
}  # fmt: skip


class LazyCommands(TyperGroup):
    """The commands of COMMANDS, each loaded from its module when it is run or its help is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        command = typer.main.get_command(getattr(importlib.import_module(module), attribute))
        if attribute == "app":
            return command.commands[name]  # one of the module's several commands
        command.name = name
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super(TyperGroup, self).format_help(ctx, formatter)  # Click's: Typer's rich panels load every command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in COMMANDS.items()])


app = typer.Typer(cls=LazyCommands, help="callbridge: the CRM side of your cloud PBX.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """callbridge: the CRM side of your cloud PBX."""
    # what any command makes (the SQLite database with its -wal and -shm, recordings, the session key) is its
    # owner's alone: tokens, PBX passwords, webhook secrets and calls' recordings are in there
    os.umask(0o077)
