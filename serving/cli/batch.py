"""``corridor batch submit|list|status|cancel|download``: the Batch API from the command line.

Talks HTTP to the gateway (``--url``, default ``$CORRIDOR_URL`` or
http://127.0.0.1:8000) with a tenant admin key: ``--key``, else
``$CORRIDOR_API_KEY``, else ``--tenant T`` (the ``T/admin`` entry of
``$CORRIDOR_HOME/demo-keys.json`` written by ``corridor up``)::

    corridor batch submit cases.jsonl --endpoint /v1/chat/completions --marking DR --wait --tenant fr-interior
    corridor batch list --tenant fr-interior
    corridor batch status batch_… --tenant fr-interior
    corridor batch cancel batch_… --tenant fr-interior
    corridor batch download batch_… --output results.jsonl --tenant fr-interior

``submit --wait`` shows a progress bar (lines done / total, rate, time left)
and downloads the output and error files when the batch ends.

Exit status: 0 done (a batch waited for completed), 1 refused by the gateway
or the batch ended other than completed, 2 bad usage or the gateway unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeRemainingColumn)
from rich.table import Column, Table
from rich.text import Text

app = typer.Typer(help="Submit, follow, cancel and download batch jobs (tenant admins).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

UrlOption = Annotated[Optional[str], typer.Option(
    "--url", help="Gateway URL (default $CORRIDOR_URL or http://127.0.0.1:8000).")]
KeyOption = Annotated[Optional[str], typer.Option(
    "--key", help="Tenant admin API key (default $CORRIDOR_API_KEY).")]
TenantOption = Annotated[Optional[str], typer.Option(
    "--tenant", help="Use the demo admin key of this tenant from $CORRIDOR_HOME/demo-keys.json.")]
HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", help="State directory with demo-keys.json (default $CORRIDOR_HOME or .corridor).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON.")]

ENDED = ("completed", "failed", "cancelled", "expired")


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _die(message: str, code: int = 2) -> typer.Exit:
    _err().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


class _Gateway:
    """The gateway's Files and Batch API over HTTP, errors turned into exits."""

    def __init__(self, url: str | None, key: str | None, tenant: str | None, home: Path | None) -> None:
        self.base = (url or os.environ.get("CORRIDOR_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.client = httpx.Client(base_url=self.base + "/v1", timeout=120,
                                   headers={"authorization": f"Bearer {_key(key, tenant, home)}"})

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise _die(f"cannot reach the gateway at {self.base}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error") or {}
            except (ValueError, AttributeError):
                error = {}
            message = error.get("message") or response.text or response.reason_phrase
            raise _die(f"{response.status_code} {error.get('code') or ''}: {message}".replace(" :", ":"), 1)
        return response

    def json(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        return self.call(method, path, **options).json()

    def download(self, file_id: str, target: Path) -> int:
        """Stream a file's content to ``target``; returns its number of lines."""
        lines = 0
        try:
            with self.client.stream("GET", f"/files/{file_id}/content") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _die(f"{response.status_code}: cannot download {file_id}: {response.text}", 1)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        lines += chunk.count(b"\n")
        except httpx.HTTPError as exc:
            raise _die(f"cannot reach the gateway at {self.base}: {exc}") from exc
        return lines


def _key(key: str | None, tenant: str | None, home: Path | None) -> str:
    if key:
        return key
    env = os.environ.get("CORRIDOR_API_KEY")
    if env:
        return env
    if tenant:
        path = (home or Path(os.environ.get("CORRIDOR_HOME", ".corridor"))) / "demo-keys.json"
        try:
            keys = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise _die(f"--tenant {tenant}: cannot read {path} ({exc}); pass --key or start "
                       f"`corridor up`") from exc
        if f"{tenant}/admin" not in keys:
            raise _die(f"--tenant {tenant}: {path} has no '{tenant}/admin' key")
        return keys[f"{tenant}/admin"]
    raise _die("no admin key: pass --key, set $CORRIDOR_API_KEY, or --tenant T with demo keys")


class _RateColumn(ProgressColumn):
    """Lines per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} lines/s" if speed else "– lines/s", style="progress.data.speed")


def _when(seconds: int | None) -> str:
    if not seconds:
        return "–"
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _summary(batch: dict[str, Any]) -> str:
    counts = batch.get("request_counts") or {}
    corridor = batch.get("corridor") or {}
    flags = ",".join(corridor.get("data_flags") or [])
    return (f"{batch['id']}  {batch['status']}  {batch['endpoint']}  model {batch.get('model') or '–'}  "
            f"marking {corridor.get('marking', '–')}{'+' + flags if flags else ''}  "
            f"{counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed "
            f"of {counts.get('total', 0)}")


def _print_errors(batch: dict[str, Any]) -> None:
    errors = (batch.get("errors") or {}).get("data") or []
    for error in errors:
        where = f"line {error['line']}: " if error.get("line") else ""
        _err().print(f"  {escape(where)}{escape(error.get('code') or '')} — {escape(error.get('message') or '')}")


def _fetch(gateway: _Gateway, batch: dict[str, Any], output: Path | None, errors: Path | None) -> None:
    out = Console(highlight=False, soft_wrap=True)
    for key, target, what in (("output_file_id", output, "output"), ("error_file_id", errors, "errors")):
        file_id = batch.get(key)
        if not file_id:
            continue
        target = target or Path(f"{batch['id']}_{what}.jsonl")
        lines = gateway.download(file_id, target)
        out.print(f"{what}: {lines} lines → {target}")


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input JSONL file.")],
    endpoint: Annotated[str, typer.Option(help="Endpoint of every line.")] = "/v1/chat/completions",
    marking: Annotated[Optional[str], typer.Option(help="Marking of every line (default: the tenant's).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data flags, comma-separated, e.g. health,personal.")] = None,
    window: Annotated[str, typer.Option(help="Completion window, e.g. 24h, 90m.")] = "24h",
    metadata: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE, repeatable.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the batch with a progress bar and download its results.")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Where --wait writes the output lines.")] = None,
    errors: Annotated[Optional[Path], typer.Option(help="Where --wait writes the error lines.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between status polls.", min=0.05)] = 1.0,
    url: UrlOption = None, key: KeyOption = None, tenant: TenantOption = None, home: HomeOption = None,
) -> None:
    """Upload FILE and create a batch on it; with --wait, follow it and download the results."""
    pairs = {}
    for item in metadata or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _die(f"--metadata: got {item!r}, want KEY=VALUE")
        pairs[name] = value
    gateway = _Gateway(url, key, tenant, home)
    with file.open("rb") as handle:
        uploaded = gateway.json("POST", "/files", files={"file": (file.name, handle)},
                                data={"purpose": "batch"})
    headers = {}
    if marking:
        headers["X-Corridor-Marking"] = marking
    if data:
        headers["X-Corridor-Data"] = data
    batch = gateway.json("POST", "/batches", headers=headers,
                         json={"input_file_id": uploaded["id"], "endpoint": endpoint,
                               "completion_window": window, "metadata": pairs or None})
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"batch {batch['id']} created on file {uploaded['id']} "
              f"(marking {batch['corridor']['marking']})")
    if not wait:
        return
    batch = _follow(gateway, batch["id"], interval)
    out.print(_summary(batch))
    if batch["status"] == "failed":
        _print_errors(batch)
        raise typer.Exit(1)
    _fetch(gateway, batch, output, errors)
    if batch["status"] != "completed":
        raise typer.Exit(1)


def _follow(gateway: _Gateway, batch_id: str, interval: float) -> dict[str, Any]:
    """Poll until the batch ends, drawing lines done / total, rate and time left."""
    columns = (TextColumn("[bold]{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("lines"), _RateColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_err(), transient=False) as progress:
        task = progress.add_task("validating", total=None)
        while True:
            batch = gateway.json("GET", f"/batches/{batch_id}")
            counts = batch.get("request_counts") or {}
            done = counts.get("completed", 0) + counts.get("failed", 0)
            progress.update(task, description=batch["status"], completed=done,
                            total=counts.get("total") or None)
            if batch["status"] in ENDED:
                return batch
            time.sleep(interval)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
    url: UrlOption = None, key: KeyOption = None, tenant: TenantOption = None, home: HomeOption = None,
) -> None:
    """The tenant's batches, newest first."""
    page = _Gateway(url, key, tenant, home).json("GET", "/batches", params={"limit": limit})
    if as_json:
        typer.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    table = Table(Column("id", no_wrap=True), "status", "endpoint", "model", "marking",
                  "done / total", "created")
    for batch in page["data"]:
        counts = batch.get("request_counts") or {}
        table.add_row(batch["id"], batch["status"], batch["endpoint"], batch.get("model") or "–",
                      (batch.get("corridor") or {}).get("marking", "–"),
                      f"{counts.get('completed', 0) + counts.get('failed', 0)} / {counts.get('total', 0)}",
                      _when(batch.get("created_at")))
    Console(highlight=False).print(table)


@app.command()
def status(
    batch_id: Annotated[str, typer.Argument(help="Batch id, e.g. batch_3f9c…")],
    as_json: JsonOption = False,
    url: UrlOption = None, key: KeyOption = None, tenant: TenantOption = None, home: HomeOption = None,
) -> None:
    """One batch: status, counts, files, and why it waits if it does."""
    batch = _Gateway(url, key, tenant, home).json("GET", f"/batches/{batch_id}")
    if as_json:
        typer.echo(json.dumps(batch, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(_summary(batch))
    out.print(f"created {_when(batch.get('created_at'))}, expires {_when(batch.get('expires_at'))}")
    for key_ in ("output_file_id", "error_file_id"):
        if batch.get(key_):
            out.print(f"{key_}: {batch[key_]}")
    waiting = (batch.get("corridor") or {}).get("waiting")
    if waiting:
        out.print(f"[yellow]waiting:[/yellow] {escape(waiting)}")
    _print_errors(batch)


@app.command()
def cancel(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    url: UrlOption = None, key: KeyOption = None, tenant: TenantOption = None, home: HomeOption = None,
) -> None:
    """Cancel a batch: no new line starts; lines in flight finish."""
    batch = _Gateway(url, key, tenant, home).json("POST", f"/batches/{batch_id}/cancel")
    Console(highlight=False, soft_wrap=True).print(_summary(batch))


@app.command()
def download(
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    output: Annotated[Optional[Path], typer.Option(help="Where to write the output lines.")] = None,
    errors: Annotated[Optional[Path], typer.Option(help="Where to write the error lines.")] = None,
    url: UrlOption = None, key: KeyOption = None, tenant: TenantOption = None, home: HomeOption = None,
) -> None:
    """Download the output and error files of an ended batch."""
    gateway = _Gateway(url, key, tenant, home)
    batch = gateway.json("GET", f"/batches/{batch_id}")
    if batch["status"] not in ENDED:
        raise _die(f"batch {batch_id} is {batch['status']}; its files exist once it ends", 1)
    if not batch.get("output_file_id") and not batch.get("error_file_id"):
        raise _die(f"batch {batch_id} is {batch['status']} and has no result files", 1)
    _fetch(gateway, batch, output, errors)
