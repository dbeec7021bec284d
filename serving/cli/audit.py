"""``corridor audit …``: verify, export and sign the placement ledger.

State is read from ``$CORRIDOR_HOME`` (default ``.corridor`` in the working
directory); ``--home`` overrides it. A site whose ledger is in PostgreSQL names it with
``--database URL`` (or ``$CORRIDOR_DATABASE``); the signing key stays in the home::

    corridor audit verify [--home DIR] [--database URL]
    corridor audit verify --export FILE --tree-head FILE [--public-key FILE]
    corridor audit export [--home DIR] [--database URL] [--tenant T] [--tree-size N]
    corridor audit tree-head [--home DIR] [--database URL] [--size N]
    corridor audit public-key [--home DIR]

An auditor pairs an export with a tree head: ``tree-head > head.json``, then
``export --tenant T --tree-size <head's tree_size> > t.jsonl`` (each line then
carries its inclusion proof), ``public-key > key.json``, and later, anywhere,
``verify --export t.jsonl --tree-head head.json --public-key key.json``.

Exit status: 0 verified, 1 verification failed (the message names the first
bad index and the check that failed), 2 bad usage or missing state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from policies.canonical import canonical_json
from scheduler.ledger import (
    DB_FILENAME,
    KEY_FILENAME,
    Ledger,
    LedgerError,
    LedgerLockedError,
    LedgerReader,
    NotFoundError,
    PublicKey,
    VerificationError,
    verify_export,
)
from scheduler.ledger.signing import load_signing_key
from serving.feed import report_tamper

app = typer.Typer(
    help="Verify, export and sign the placement ledger.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="CORRIDOR_HOME",
        show_default=False,
        help="State directory holding ledger.db and the signing key (default: .corridor in the working directory).",
    ),
]

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="CORRIDOR_DATABASE",
        show_default=False,
        help="The site's PostgreSQL database holding the ledger, postgresql://… (default: ledger.db in the home).",
    ),
]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _home(home: Path | None) -> Path:
    return home if home is not None else Path(".corridor")


def _die(message: str, code: int = 2) -> typer.Exit:
    _err().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _die(f"cannot read {what} {path}: {exc}") from exc


def _public_key(public_key: Path | None, home: Path):
    """The key to verify tree heads with: ``--public-key`` JSON, else the signing key in ``home``."""
    try:
        if public_key is not None:
            return PublicKey.model_validate(_read_json(public_key, "public key")).load()
        if (home / KEY_FILENAME).exists():
            return load_signing_key(home / KEY_FILENAME).public_key()
    except (LedgerError, ValueError) as exc:
        raise _die(str(exc)) from exc
    raise _die(
        f"no public key: pass --public-key (the JSON of `corridor audit public-key`) or a --home with {KEY_FILENAME}"
    )


def _reader(home: Path, public_key=None, database: str | None = None) -> LedgerReader:
    try:
        return LedgerReader.open(home, database=database, public_key=public_key)
    except LedgerError as exc:
        raise _die(f"{exc} ({'check --database' if database else 'set --home or $CORRIDOR_HOME'})") from exc


def _failed(exc: VerificationError) -> typer.Exit:
    where = []
    if exc.line is not None:
        where.append(f"line {exc.line}")
    if exc.index is not None:
        where.append(f"first bad index {exc.index}")
    if exc.tree_size is not None:
        where.append(f"tree head of size {exc.tree_size}")
    console = _err()
    console.print(f"[bold red]✗ verification failed[/bold red]: {escape(', '.join(where) or 'tree head')}")
    console.print(f"  check: {escape(exc.check)}")
    console.print(f"  {escape(exc.message)}")
    return typer.Exit(1)


@app.command()
def verify(
    home: HomeOption = None,
    database: DatabaseOption = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", dir_okay=False, help="Verify this JSON-lines export offline, without the database."),
    ] = None,
    tree_head: Annotated[
        Path | None,
        typer.Option("--tree-head", dir_okay=False, help="Signed tree head JSON to check the export against."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key", dir_okay=False, help="Public key JSON {key_id, public_key} (default: the key in --home)."
        ),
    ] = None,
    peer: Annotated[str | None, typer.Option(
        "--peer", help="Instead: check the peer site's log (at this gateway URL) against every head of it "
                       "this site (--home) witnessed.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", envvar="CORRIDOR_AUDITOR_KEY", help="With --peer: an auditor key valid at the peer site.")] = None,
) -> None:
    """Verify the stored ledger, an export against a signed tree head, or (--peer) the peer site's log."""
    if peer is not None:
        from serving.cli.audit_peer import verify_peer

        verify_peer(peer, home, key)
        return
    home = _home(home)
    if (export is None) != (tree_head is None):
        raise _die("--export and --tree-head go together")
    if export is not None and tree_head is not None:
        head = _read_json(tree_head, "tree head")
        key = _public_key(public_key, home)
        try:
            with export.open(encoding="utf-8") as lines:
                report = verify_export(lines, head, key)
        except OSError as exc:
            raise _die(f"cannot read export {export}: {exc.strerror}") from exc
        except VerificationError as exc:
            raise _failed(exc) from exc
        how = "inclusion proofs" if report.with_proofs else "recomputed root"
        extra = f"; {report.uncovered} later lines checked but not covered" if report.uncovered else ""
        _out().print(
            f"[green]✓[/green] export verified: {report.lines} lines against the tree head of size "
            f"{report.tree_size} ({how}), root {report.root_hash}{extra}"
        )
        return
    key = _public_key(public_key, home) if public_key is not None else None
    reader = _reader(home, key, database)
    try:
        report = reader.verify()
    except VerificationError as exc:
        reported = report_tamper(home, check=exc.check, message=exc.message, index=exc.index,
                                 tree_size=exc.tree_size)
        if reported is not None:
            _err().print(f"  reported to the security feed {escape(str(reported))}")
        raise _failed(exc) from exc
    except NotFoundError as exc:
        raise _die(f"{exc}: pass --public-key") from exc
    except LedgerError as exc:  # the database went away during verification
        raise _die(str(exc)) from exc
    finally:
        reader.close()
    pending = f"; {report.unsigned} newer entries not yet covered by a tree head" if report.unsigned else ""
    _out().print(
        f"[green]✓[/green] ledger verified: {report.size} entries, root {report.root_hash}, "
        f"{report.tree_heads} tree heads (latest covers {report.signed_size}){pending}"
    )


@app.command()
def export(
    home: HomeOption = None,
    database: DatabaseOption = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's entries.")] = None,
    tree_size: Annotated[
        int | None,
        typer.Option(
            "--tree-size", min=0, help="Only entries below this size, each with its inclusion proof in that tree."
        ),
    ] = None,
) -> None:
    """Write ledger items as JSON lines (canonical JSON) to stdout."""
    reader = _reader(_home(home), database=database)
    try:
        write = sys.stdout.write
        for item in reader.export(tenant=tenant, tree_size=tree_size):
            write(canonical_json(item).decode("utf-8") + "\n")
        sys.stdout.flush()
    except LedgerError as exc:
        raise _die(str(exc)) from exc
    finally:
        reader.close()


@app.command("tree-head")
def tree_head(
    home: HomeOption = None,
    database: DatabaseOption = None,
    size: Annotated[
        int | None, typer.Option("--size", min=0, help="The stored head of this size instead of the latest.")
    ] = None,
) -> None:
    """Print the latest signed tree head as JSON, signing one first if the log grew and no other process writes it."""
    home = _home(home)
    if database is None and not (home / DB_FILENAME).is_file():
        raise _die(f"no ledger database at {home / DB_FILENAME} (set --home or $CORRIDOR_HOME)")
    head = None
    if size is None and (home / KEY_FILENAME).exists():
        try:
            with Ledger.open(home, database=database) as ledger:
                head = ledger.latest_tree_head()
        except LedgerLockedError:
            _err().print(
                "[yellow]note:[/yellow] the ledger is open in another process; printing the latest stored tree head"
            )
        except LedgerError as exc:
            raise _die(str(exc)) from exc
    if head is None:
        reader = _reader(home, database=database)
        try:
            if size is None:
                head = reader.latest_tree_head()
            else:
                head = next((h for h in reader.tree_heads() if h["tree_size"] == size), None)
                if head is None:
                    raise _die(f"no tree head of size {size} was issued")
        except NotFoundError as exc:
            raise _die(str(exc)) from exc
        finally:
            reader.close()
    typer.echo(json.dumps(head, indent=2))


@app.command("public-key")
def public_key(home: HomeOption = None) -> None:
    """Print the public key that verifies this ledger's tree heads, as JSON."""
    path = _home(home) / KEY_FILENAME
    if not path.exists():
        raise _die(f"no signing key at {path} (set --home or $CORRIDOR_HOME)")
    try:
        key = load_signing_key(path).public_key()
    except LedgerError as exc:
        raise _die(str(exc)) from exc
    typer.echo(json.dumps(PublicKey.of(key).model_dump(), indent=2))


if __name__ == "__main__":
    app()


# Checks across the two sites of the corridor (``verify-peer``, ``reconcile``) register here.
import serving.cli.audit_peer  # noqa: E402,F401
import serving.cli.audit_replay  # noqa: E402,F401
