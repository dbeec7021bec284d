"""The ``corridor`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from serving.cli import audit, batch, crisis, policy, status, up

app = typer.Typer(
    name="corridor",
    help="Sovereign AI inference for the Franco-German cloud corridor.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(policy.app, name="policy")
app.add_typer(audit.app, name="audit")
app.add_typer(crisis.app, name="crisis")
app.add_typer(batch.app, name="batch")
app.command("up")(up.up)
app.command("status")(status.status)


def main() -> None:
    """Console-script entry point."""
    app()
