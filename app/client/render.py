"""How the CLI shows things: rich tables, the job progress bar, errors, and raw JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from app.client.api import (
    ApiError,
    ApiUnreachableError,
    ErrorInfo,
    Event,
    Job,
    Plan,
    Share,
    Target,
)

STATUS_STYLE = {
    "queued": "blue",
    "running": "cyan",
    "pending": "blue",
    "succeeded": "green",
    "partially_succeeded": "yellow",
    "failed": "red",
    "cancelled": "magenta",
}


# When output goes to a file or a pipe, tables are not squeezed into 80 columns.
PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (made per command, so tests can capture it)."""
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def print_json(data: object) -> None:
    """Raw JSON for scripts: no colour, no wrapping, one document per command."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{escape(status)}[/{style}]"


def counts_text(job: Job) -> str:
    p = job["progress"]
    parts = [
        f"[green]{p['succeeded']} succeeded[/green]",
        f"[red]{p['failed']} failed[/red]",
        f"[blue]{p['pending'] + p['running']} pending[/blue]",
    ]
    if p["cancelled"]:
        parts.append(f"[magenta]{p['cancelled']} cancelled[/magenta]")
    return " · ".join(parts)


def job_line(job: Job) -> str:
    """'Job ID: share ami-… in us-east-1 → succeeded (2 destinations: 2 succeeded · …)'."""
    what = f"{job['action']} {job['image_id']} in {job['region']}"
    total = job["progress"]["total"]
    noun = "destination" if total == 1 else "destinations"
    return (
        f"Job [bold]{escape(job['id'])}[/bold]: {escape(what)} → {status_text(job['status'])} "
        f"({total} {noun}: {counts_text(job)})"
    )


def job_table(job: Job) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    labels = ", ".join(f"{k}={v}" for k, v in job["labels"].items()) or "-"
    rows = [
        ("job", job["id"]),
        ("action", job["action"]),
        ("image", f"{job['image_id']} ({job['region']}, source {job['source_account_id']})"),
        ("also in", ", ".join(job["regions"]) or "-"),
        ("shared image", _shared_image(job)),
        ("kms access", job["kms_access"]),
        ("copies", _copies(job)),
        ("snapshots", "included" if job["share_snapshots"] else "not included"),
        ("verify", "yes" if job["verify"] else "no"),
        ("labels", labels),
        ("created", job["created_at"]),
        ("finished", job["finished_at"] or "-"),
    ]
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    table.add_row("status", status_text(job["status"]))
    table.add_row("destinations", f"{job['progress']['total']}: {counts_text(job)}")
    if job["error"]:
        error = job["error"]
        table.add_row("error", f"[red]{escape(error['code'])}[/red]: {escape(error['message'])}")
    return table


def _shared_image(job: Job) -> str:
    shared = job["shared_image_id"]
    if shared is None:
        return "not known yet (re-encrypted copy pending)"
    return shared if shared == job["image_id"] else f"{shared} (a re-encrypted copy)"


def _copies(job: Job) -> str:
    if not job["copy"]:
        return "none"
    key = job["copy"].get("kms_key_id") or "each destination's default EBS key"
    return f"into each destination, under {key}"


def regions_table(job: Job, targets: Iterable[Target]) -> Listing:
    """Each of the job's Regions: the image shared there and how its targets stand."""
    listing = Listing(("region", "image", "succeeded", "failed", "pending", "total"))
    by_region: dict[str, list[Target]] = {r: [] for r in (job["region"], *job["regions"])}
    for target in targets:
        by_region.setdefault(target["region"], []).append(target)
    for region, found in by_region.items():
        statuses = [t["status"] for t in found]
        images = {t["image_id"] for t in found if t["image_id"]}
        listing.add_row(
            region,
            escape(", ".join(sorted(images)) or "-"),
            str(statuses.count("succeeded")),
            str(statuses.count("failed")),
            str(statuses.count("pending") + statuses.count("running")),
            str(len(found)),
        )
    return listing


def copies_table(targets: Iterable[Target]) -> Listing:
    """Each destination's copy: how far it got, and the copy's id."""
    listing = Listing(("principal", "region", "status", "step", "copy"))
    for target in targets:
        listing.add_row(
            escape(target["principal"]),
            target["region"],
            status_text(target["status"]),
            target["step"],
            escape(target["copied_image_id"] or "-"),
        )
    return listing


def drift_text(target: Target) -> str:
    """A reconcile target's drift: 'in agreement', 'missing: …', or 'unrecorded (…)'."""
    drift = target["drift"]
    if drift is None:
        return "[green]in agreement[/green]"
    parts = []
    if drift["missing"]:
        parts.append("[red]missing:[/red] " + ", ".join(drift["missing"]))
    if drift["unrecorded"]:
        parts.append("[yellow]unrecorded[/yellow]: AWS shares it, the ledger does not know it")
    return "; ".join(parts)


def drift_table(targets: Iterable[Target]) -> Listing:
    """A reconcile's findings: each principal, what differs, and what the job did about it."""
    listing = Listing(
        ("principal", "region", "drift", "status", "note"), wrap=("drift", "note"), title="Drift"
    )
    for target in targets:
        listing.add_row(
            escape(target["principal"]),
            target["region"],
            drift_text(target),
            status_text(target["status"]),
            escape(target["note"] or ""),
        )
    return listing


OUTCOME_MARK = {
    "change": "[green]+[/green]",
    "no_change": "[dim]=[/dim]",
    "refused": "[red]![/red]",
}
REVOKE_OUTCOME_MARK = {**OUTCOME_MARK, "change": "[red]-[/red]"}


def _added_removed(added: Iterable[str], removed: Iterable[str]) -> list[str]:
    return [f"      [green]+ {escape(a)}[/green]" for a in added] + [
        f"      [red]- {escape(r)}[/red]" for r in removed
    ]


def plan_lines(plan: Plan) -> list[str]:
    """A plan as a readable diff: each target's outcome, then every AWS change with its
    principals (+ given, - taken back), then the key access a revoke keeps, and why."""
    regions = f" (also in {', '.join(plan['regions'])})" if plan["regions"] else ""
    outcomes = [t["outcome"] for t in plan["targets"]]
    lines = [
        f"[bold]Plan[/bold]: {escape(plan['action'])} {escape(plan['image_id'])} in "
        f"{escape(plan['region'])}{escape(regions)}",
        f"Targets: {outcomes.count('change')} to change · {outcomes.count('no_change')} "
        f"unchanged · {outcomes.count('refused')} refused",
    ]
    marks = REVOKE_OUTCOME_MARK if plan["action"] == "revoke" else OUTCOME_MARK
    for target in plan["targets"]:
        reason = f"  [dim]{escape(target['reason'])}[/dim]" if target["reason"] else ""
        lines.append(
            f"  {marks[target['outcome']]} {escape(target['principal'])} "
            f"({escape(target['region'])}){reason}"
        )
    lines.append(
        "AWS changes:" if plan["changes"] else "AWS changes: none (only read calls were made)"
    )
    for change in plan["changes"]:
        where = f"[dim]({escape(change['region'])})[/dim]"
        if change["api"] == "PutKeyPolicy":
            lines.append(
                f"  [yellow]~[/yellow] kms:PutKeyPolicy {escape(change['resource'])} {where}"
            )
            lines += _added_removed(change["principals_added"], change["principals_removed"])
            lines.append(
                f"      policy {change['policy_bytes_before']:,} → "
                f"{change['policy_bytes_after']:,} bytes (KMS takes at most 32,768)"
            )
        elif change["api"] == "CreateGrant":
            lines.append(f"  [green]+[/green] kms:CreateGrant {escape(change['resource'])} {where}")
            lines += _added_removed(change["principals"], [])
        elif change["api"] == "RetireGrant":
            lines.append(f"  [red]-[/red] kms:RetireGrant {escape(change['resource'])} {where}")
            lines += _added_removed([], change["principals"])
        elif change["api"] == "CopyImage":
            lines.append(
                f"  [green]+[/green] ec2:CopyImage {escape(change['resource'])} into account "
                f"{escape(change['account'])} {where}"
            )
        else:
            lines.append(
                f"  [yellow]~[/yellow] ec2:{change['api']} {escape(change['resource'])} {where}"
            )
            lines += _added_removed(change["add"], change["remove"])
    if plan["kept_key_access"]:
        lines.append("Key access kept (another share still needs it):")
        for kept in plan["kept_key_access"]:
            lines.append(
                f"  = {escape(kept['principal'])} keeps {escape(key_id(kept['kms_key_id']))}: "
                f"needed by {escape(', '.join(kept['needed_by']))}"
            )
    if plan["error"]:
        error = plan["error"]
        lines.append(
            f"[red]The job would fail: {escape(error['code'])}[/red]: {escape(error['message'])}"
        )
    return lines


def when(timestamp: str) -> str:
    """'2026-11-28T18:10:13.781606Z' -> '2026-11-28 18:10:13' (UTC, as the API gives it)."""
    return timestamp[:19].replace("T", " ")


def key_id(arn: str) -> str:
    """A KMS key ARN -> its key id (the table shows ids; --json has the ARNs)."""
    return arn.rsplit("/", 1)[-1]


def _lines(cell: str) -> list[str]:
    return Text.from_markup(cell).plain.splitlines() or [""]


def _natural_width(cell: str) -> int:
    return max(cell_len(line) for line in _lines(cell))


def _longest_word(cell: str) -> int:
    return max((cell_len(word) for line in _lines(cell) for word in line.split()), default=0)


@dataclass
class Listing:
    """Rows as a table when the console is wide enough for one, else as one block per row.

    Only `wrap` columns may wrap (at spaces); every other cell stays whole on one line, so
    that ids can be copied. Cells are rich markup.
    """

    columns: tuple[str, ...]
    wrap: tuple[str, ...] = ()
    title: str | None = None
    rows: list[tuple[str, ...]] = field(default_factory=list)

    GAP = 2  # one space of right padding and the blank column divider
    SLACK = 4  # rich shares the room left between wrapping columns unevenly

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def min_widths(self) -> list[int]:
        """Per column: the whole widest cell, or for `wrap` columns the longest word."""
        widths = []
        for index, name in enumerate(self.columns):
            measure = _longest_word if name in self.wrap else _natural_width
            widths.append(max([len(name), *(measure(row[index]) for row in self.rows)]))
        return widths

    def width_needed(self) -> int:
        widths = self.min_widths()
        return sum(widths) + self.GAP * (len(widths) - 1) + 1  # the last column's padding

    def table(self) -> Table:
        table = Table(
            title=self.title,
            title_style="bold red",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        for name, width in zip(self.columns, self.min_widths(), strict=True):
            wraps = name in self.wrap
            table.add_column(name, no_wrap=not wraps, min_width=width if wraps else None)
        for row in self.rows:
            table.add_row(*row)
        return table

    def records(self) -> Group:
        parts: list[RenderableType] = [Text(self.title, style="bold red")] if self.title else []
        for row in self.rows:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for name, cell in zip(self.columns, row, strict=True):
                grid.add_row(name, cell)
            parts += [grid, Text("")]
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        fits = self.width_needed() + self.SLACK <= options.max_width
        yield self.table() if fits else self.records()


def failed_targets_table(targets: Iterable[Target], job_error: ErrorInfo | None = None) -> Listing:
    """Failed targets and why; a message the job's own error already gave is not repeated."""
    listing = Listing(
        ("principal", "step", "error", "tries", "message"),
        wrap=("message",),
        title="Failed targets",
    )
    for target in targets:
        error = target["error"] or {"code": "-", "message": ""}
        message = escape(error["message"])
        if job_error is not None and error == job_error:
            message = "[dim](the job's error, above)[/dim]"
        listing.add_row(
            escape(target["principal"]),
            target["step"],
            f"[red]{escape(error['code'])}[/red]",
            str(target["attempts"]),
            message,
        )
    return listing


def progress_cell(job: Job) -> str:
    """'2/2', or '1/2, 1 failed': succeeded of all, and failures when there are some."""
    p = job["progress"]
    cell = f"{p['succeeded']}/{p['total']}"
    return f"{cell}, [red]{p['failed']} failed[/red]" if p["failed"] else cell


def jobs_table(jobs: Iterable[Job]) -> Listing:
    """One row per job; the region is in `amishare status JOB` (an AMI id names one region)."""
    listing = Listing(
        ("job", "status", "action", "image", "ok/all", "created"), wrap=("ok/all", "created")
    )
    for job in jobs:
        listing.add_row(
            escape(job["id"]),
            status_text(job["status"]),
            job["action"],
            escape(job["image_id"]),
            progress_cell(job),
            when(job["created_at"]),
        )
    return listing


def shares_table(shares: Iterable[Share]) -> Listing:
    """One row per image and principal; ARNs and snapshot ids are in --json."""
    listing = Listing(
        ("image", "principal", "type", "kms keys", "snapshots", "copy", "shared at", "job"),
        wrap=("kms keys", "shared at"),
    )
    for share in shares:
        image = share["image_id"]
        if share["source_image_id"]:
            image += f"\n(copy of {share['source_image_id']})"
        listing.add_row(
            escape(image),
            escape(share["principal"]),
            share["principal_type"],
            escape("\n".join(key_id(k) for k in share["kms_key_ids"]) or "-"),
            str(len(share["snapshot_ids"])),
            escape(share["copied_image_id"] or "-"),
            when(share["shared_at"]),
            escape(share["job_id"]),
        )
    return listing


def events_table(events: Iterable[Event]) -> Listing:
    listing = Listing(
        ("time", "api", "resource", "principals", "outcome", "message"),
        wrap=("time", "principals", "message"),
    )
    for event in events:
        ok = event["outcome"] == "ok"
        listing.add_row(
            when(event["created_at"]),
            escape(event["api"]),
            escape(event["resource"]),
            escape(", ".join(event["principals"])),
            f"[{'green' if ok else 'red'}]{escape(event['outcome'])}[/]",
            escape(event["message"] or ""),
        )
    return listing


def api_error(out: Console, error: ApiError) -> None:
    """`error: 422 detail` and one `  field: message` line per bad field."""
    out.print(f"[bold red]error:[/bold red] {error.status} {escape(error.detail)}")
    for item in error.errors:
        line = f"{item.field}: {item.message}"
        if line not in error.detail:  # the detail often lists them already
            out.print(f"  {escape(line)}")


def unreachable(out: Console, error: ApiUnreachableError) -> None:
    out.print(
        f"[bold red]error:[/bold red] cannot reach amishare at {escape(error.url)} "
        f"({escape(error.reason)}); is `amishare serve` or `amishare sandbox` running?"
    )


class JobProgress:
    """A progress bar for one job: finished destinations of all, and the counts by outcome."""

    def __init__(self, out: Console, job: Job) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        )
        self._task = self._progress.add_task(
            self._description(job), total=job["progress"]["total"] or None, counts=""
        )
        self.update(job)

    @staticmethod
    def _description(job: Job) -> str:
        return f"{job['action']} {escape(job['image_id'])} {status_text(job['status'])}"

    def update(self, job: Job) -> None:
        p = job["progress"]
        self._progress.update(
            self._task,
            description=self._description(job),
            total=p["total"] or None,
            completed=p["succeeded"] + p["failed"] + p["cancelled"],
            counts=counts_text(job),
        )

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()
