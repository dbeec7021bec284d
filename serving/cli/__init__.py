"""The ``corridor`` command: one module per command group, each loaded only when it runs.

``corridor --help`` and ``corridor <group> …`` import only the group they name, so
a command pays for what it uses: ``corridor policy``, ``audit``, ``crisis``,
``batch`` and ``status`` never load Ray, FastAPI or vLLM; ``corridor up`` does.
:data:`COMMANDS` is the whole top level; each module holds a Typer ``app`` (a
group) or one command function.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

#: name -> (module, attribute: a Typer app or a command function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("serving.cli.up", "up", "Start the embedded default: local Ray cluster, FR and DE pools, "
           "demo model, gateway."),
    "gateway": ("serving.cli.gateway", "gateway", "One gateway worker of a site that runs several "
                "(started by corridor up --gateway-workers, or a Kubernetes Deployment)."),
    "status": ("serving.cli.status", "status", "Autarky readiness and state of an installation."),
    "policy": ("serving.cli.policy", "app", "Validate policy bundles, explain decisions, apply a "
               "bundle to a running installation."),
    "audit": ("serving.cli.audit", "app", "Verify, export and sign the placement ledger."),
    "crisis": ("serving.cli.crisis", "app", "Declare, approve, revoke and list crisis declarations "
               "(operators)."),
    "batch": ("serving.cli.batch", "app", "Submit, follow, cancel and download batch jobs "
              "(tenant admins)."),
    "deploy": ("serving.cli.deploy", "app", "Deploy, scale and remove models on a running "
               "installation."),
    "keys": ("serving.cli.keys", "app", "Issue, list and revoke API keys."),
}


def load_command(name: str) -> Any:
    """The (click) command of ``name``, importing its module now."""
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if not isinstance(target, typer.Typer):
        single = typer.Typer(pretty_exceptions_show_locals=False)
        single.command(name)(target)
        target = single
    command = typer.main.get_command(target)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """A Typer group whose subcommands are imported on first use.

    Its own help is written from :data:`COMMANDS`, so ``corridor --help`` loads no subcommand.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...")
        formatter.write_paragraph()
        formatter.write_text(self.help or "")
        with formatter.section("Options"):
            formatter.write_dl([("--help", "Show this message and exit.")])
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


app = typer.Typer(cls=LazyGroup, name="corridor", no_args_is_help=True, add_completion=False,
                  help="Sovereign AI inference for the Franco-German cloud corridor.",
                  pretty_exceptions_show_locals=False)


@app.callback()
def _corridor() -> None:
    """Sovereign AI inference for the Franco-German cloud corridor."""


def main() -> None:
    """Console-script entry point."""
    app()
