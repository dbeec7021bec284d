"""``corridor audit …``: verify and export the placement ledger (filled in by the ledger work)."""

import typer

app = typer.Typer(help="Verify and export the placement ledger.", no_args_is_help=True)
