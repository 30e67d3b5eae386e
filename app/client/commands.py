"""The client commands of `amishare` (share, revoke, reconcile, status, policy, cancel, retry,
jobs, shares, events).

Exit codes: 0 every destination succeeded (or nothing to wait for), 1 some failed (a job that
ended partially_succeeded, failed or cancelled; with --plan, the job would fail or refuse a
target), 2 a usage or API error, 130 interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from app.client import render
from app.client.api import (
    DEFAULT_URL,
    FINISHED,
    AmiShareClient,
    ApiError,
    ApiUnreachableError,
    Job,
    JobRequest,
    KmsAccess,
    Plan,
)

POLL_SECONDS = 0.5
PANEL = "Client (talks to the HTTP API)"
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
FAILED_STATUSES = frozenset({"partially_succeeded", "failed", "cancelled"})


class KmsAccessChoice(StrEnum):
    KEY_POLICY = "key_policy"
    GRANT = "grant"
    NONE = "none"


Url = Annotated[
    str, typer.Option("--url", envvar="AMISHARE_URL", help="The amishare API's base URL.")
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="AMISHARE_TOKEN", help="Bearer token for the API.", show_default=False
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the raw JSON answer (for scripts), not tables.")
]
Wait = Annotated[
    bool, typer.Option("--wait", help="Follow the job with a progress bar until it finishes.")
]
JobId = Annotated[str, typer.Argument(help="A job's id.", show_default=False)]
ImageId = Annotated[str, typer.Argument(help="The AMI's id (ami-…).", show_default=False)]
Region = Annotated[
    str, typer.Option("--region", "-r", help="The image's region.", show_default=False)
]
Orgs = Annotated[
    list[str] | None,
    typer.Option("--org", help="Organization ARN (repeat, or comma-separate).", show_default=False),
]
Ous = Annotated[
    list[str] | None,
    typer.Option(
        "--ou", help="Organizational unit ARN (repeat, or comma-separate).", show_default=False
    ),
]
AlsoIn = Annotated[
    list[str] | None,
    typer.Option(
        "--also-in",
        help="More Regions, REGION=KEY each (comma-separated or repeated): the source copies "
        "the image into each, re-encrypted with that Region's key, and shares the copy.",
        show_default=False,
    ),
]
PlanOnly = Annotated[
    bool,
    typer.Option(
        "--plan",
        help="Only show what the job would change (read calls only; no job is made).",
    ),
]
KmsOption = Annotated[
    KmsAccessChoice | None,
    typer.Option(
        "--kms-access",
        help="How destinations get the KMS key: key_policy (server default), grant or none.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Connection:
    """Where and how to call the API, and how to print the answer."""

    url: str
    token: str | None
    as_json: bool


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def split_values(values: Iterable[str] | None) -> list[str]:
    """['1,2', '3'] -> ['1', '2', '3'] (repeated and comma-separated options alike)."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def parse_labels(values: Iterable[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or ():
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{value}' is not key=value", param_hint="'--label'")
        labels[key] = label
    return labels


def label_filter(value: str | None) -> str | None:
    """`--label team=platform` (or team:platform) -> the API's `label=team:platform`."""
    if value is None:
        return None
    key, sep, label = value.partition("=")
    return f"{key}:{label}" if sep else value


def parse_regions(values: Iterable[str] | None, *, keys_needed: bool) -> dict[str, str]:
    """`eu-west-1=alias/k,ap-south-1=alias/k2` -> {Region: key}; a revoke may name Regions
    without keys (key ''), a share names each Region's key."""
    regions: dict[str, str] = {}
    for value in split_values(values):
        region, sep, key = value.partition("=")
        if not region or (keys_needed and not (sep and key)):
            raise typer.BadParameter(
                f"'{value}' is not REGION=KEY (e.g. eu-west-1=alias/builds)",
                param_hint="'--also-in'",
            )
        regions[region] = key
    return regions


def kms_value(choice: KmsAccessChoice | None) -> KmsAccess | None:
    return choice.value if choice is not None else None


def outcome_code(job: Job) -> int:
    return EXIT_FAILED if job["status"] in FAILED_STATUSES else EXIT_OK


def run(connection: Connection, body: Callable[[AmiShareClient, Console], int]) -> None:
    """Call `body` with a client; API problems become a message and exit code 2."""
    out, err = render.console(), render.console(stderr=True)
    try:
        with AmiShareClient(connection.url, connection.token) as client:
            code = body(client, out)
    except ApiError as error:
        if connection.as_json and error.body is not None:
            render.print_json(error.body)
        render.api_error(err, error)
        raise typer.Exit(EXIT_ERROR) from None
    except ApiUnreachableError as error:
        render.unreachable(err, error)
        raise typer.Exit(EXIT_ERROR) from None
    raise typer.Exit(code)


def poll_until_finished(
    client: AmiShareClient, job: Job, changed: Callable[[Job], None] | None = None
) -> Job:
    """GET the job with If-None-Match (unchanged polls are 304s) until it is finished."""
    etag: str | None = None
    while job["status"] not in FINISHED:
        time.sleep(POLL_SECONDS)
        poll = client.get_job(job["id"], etag)
        etag = poll.etag
        if poll.job is not None:
            job = poll.job
            if changed is not None:
                changed(job)
    return job


def follow(client: AmiShareClient, job: Job, out: Console, quiet: bool) -> Job:
    """Poll until the job is finished, with a progress bar unless `quiet`."""
    if quiet:
        return poll_until_finished(client, job)
    with render.JobProgress(out, job) as bar:
        return poll_until_finished(client, job, bar.update)


def report(client: AmiShareClient, job: Job, out: Console) -> int:
    """The outcome line, the job's own error, and a table of failed targets."""
    out.print(render.job_line(job))
    if job["error"]:
        error = job["error"]
        out.print(f"[red]{escape(error['code'])}[/red]: {escape(error['message'])}")
    if job["action"] == "reconcile" and job["progress"]["total"]:
        out.print(render.drift_table(client.all_targets(job["id"])))
    if job["progress"]["failed"]:
        failed = client.all_targets(job["id"], status="failed")
        out.print(render.failed_targets_table(failed, job["error"]))
    return outcome_code(job)


def finish(client: AmiShareClient, job: Job, out: Console, connection: Connection) -> int:
    """After --wait/--watch: the final job as JSON, or the report; the exit code."""
    try:
        job = follow(client, job, out, quiet=connection.as_json)
    except KeyboardInterrupt:
        note = f"Stopped following; the job goes on: amishare status {job['id']} --watch"
        render.console(stderr=True).print(note)
        return EXIT_INTERRUPTED
    if connection.as_json:
        render.print_json(job)
        return outcome_code(job)
    return report(client, job, out)


def submitted(job: Job, out: Console, connection: Connection) -> int:
    """What `share`/`revoke`/`retry` print when not waiting."""
    if connection.as_json:
        render.print_json(job)
    else:
        out.print(render.job_line(job))
        out.print(f"Follow it with: amishare status {job['id']} --watch")
    return EXIT_OK


def follow_or_report(
    client: AmiShareClient, job: Job, wait: bool, out: Console, connection: Connection
) -> int:
    """With --wait, follow the job to its end; otherwise say how to follow it."""
    if wait:
        return finish(client, job, out, connection)
    return submitted(job, out, connection)


def start_job(connection: Connection, request: JobRequest, wait: bool) -> None:
    def body(client: AmiShareClient, out: Console) -> int:
        return follow_or_report(client, client.create_job(request), wait, out, connection)

    run(connection, body)


def plan_code(plan: Plan) -> int:
    """1 when the job would fail, or refuse a target; 0 otherwise."""
    refused = any(t["outcome"] == "refused" for t in plan["targets"])
    return EXIT_FAILED if plan["error"] is not None or refused else EXIT_OK


def show_plan(connection: Connection, request: JobRequest) -> None:
    def body(client: AmiShareClient, out: Console) -> int:
        plan = client.create_plan(request)
        if connection.as_json:
            render.print_json(plan)
        else:
            for line in render.plan_lines(plan):
                out.print(line)
        return plan_code(plan)

    run(connection, body)


def start_or_plan(connection: Connection, request: JobRequest, wait: bool, plan: bool) -> None:
    if plan and wait:
        raise typer.BadParameter("a plan makes no job to wait for", param_hint="'--wait'")
    if plan:
        show_plan(connection, request)
    else:
        start_job(connection, request, wait)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def share(
    image: ImageId,
    region: Region,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            help="Destination account IDs (comma-separated or repeated).",
            show_default=False,
        ),
    ] = None,
    org: Orgs = None,
    ou: Ous = None,
    kms_access: KmsOption = None,
    no_snapshots: Annotated[
        bool, typer.Option("--no-snapshots", help="Do not share the image's snapshots.")
    ] = False,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Check from each destination that it sees the image (server default: on when "
            "a destination role is configured).",
            show_default=False,
        ),
    ] = None,
    copy: Annotated[
        bool,
        typer.Option(
            "--copy",
            help="Each destination account copies the image into itself, under its default "
            "EBS key (needs the server's destination role).",
        ),
    ] = False,
    copy_kms_key: Annotated[
        str | None,
        typer.Option(
            "--copy-kms-key",
            help="Each destination copies the image under its own key of this alias, ID or ARN "
            "(implies --copy).",
            show_default=False,
        ),
    ] = None,
    no_copy_tags: Annotated[
        bool, typer.Option("--no-copy-tags", help="Copies do not get the image's user tags.")
    ] = False,
    also_in: AlsoIn = None,
    reencrypt_with: Annotated[
        str | None,
        typer.Option(
            "--reencrypt-with",
            help="A customer managed key of the source: an image under the AWS managed key "
            "(aws/ebs) is shared as a copy re-encrypted with it.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="A label key=value (repeat for more).", show_default=False),
    ] = None,
    wait: Wait = False,
    plan: PlanOnly = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Share an AMI (launch permission, snapshots and KMS key) with accounts, orgs or OUs."""
    copying = copy or copy_kms_key is not None
    if no_copy_tags and not copying:
        raise typer.BadParameter(
            "only with --copy or --copy-kms-key", param_hint="'--no-copy-tags'"
        )
    regions = parse_regions(also_in, keys_needed=True)
    request = JobRequest(
        action="share",
        image_id=image,
        region=region,
        account_ids=split_values(to),
        organization_arns=split_values(org),
        organizational_unit_arns=split_values(ou),
        kms_access=kms_value(kms_access),
        share_snapshots=False if no_snapshots else None,
        verify=verify,
        copy={"kms_key_id": copy_kms_key, "copy_tags": not no_copy_tags} if copying else None,
        reencrypt={"kms_key_id": reencrypt_with} if reencrypt_with else None,
        regions=list(regions),
        region_kms_key_ids=regions,
        labels=parse_labels(label),
    )
    start_or_plan(Connection(url, token, as_json), request, wait, plan)


def revoke(
    image: ImageId,
    region: Region,
    from_: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Account IDs to revoke (comma-separated or repeated).",
            show_default=False,
        ),
    ] = None,
    org: Orgs = None,
    ou: Ous = None,
    kms_access: KmsOption = None,
    also_in: Annotated[
        list[str] | None,
        typer.Option(
            "--also-in",
            help="More Regions whose copies of the image are revoked too (REGION, or "
            "REGION=KEY as the share named it; comma-separated or repeated).",
            show_default=False,
        ),
    ] = None,
    wait: Wait = False,
    plan: PlanOnly = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Take back a share: launch permission, snapshots, and key access no other share needs."""
    regions = parse_regions(also_in, keys_needed=False)
    request = JobRequest(
        action="revoke",
        image_id=image,
        region=region,
        account_ids=split_values(from_),
        organization_arns=split_values(org),
        organizational_unit_arns=split_values(ou),
        kms_access=kms_value(kms_access),
        regions=list(regions),
        region_kms_key_ids={r: k for r, k in regions.items() if k},
    )
    start_or_plan(Connection(url, token, as_json), request, wait, plan)


def reconcile(
    image: ImageId,
    region: Region,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help="Only these account IDs (comma-separated or repeated); by default every "
            "principal the ledger or AWS shows for the image.",
            show_default=False,
        ),
    ] = None,
    org: Orgs = None,
    ou: Ous = None,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Grant again what the ledger records and AWS no longer has."),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Take back shares AWS has and the ledger does not know."),
    ] = False,
    wait: Wait = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Compare the ledger of an image with AWS: what was lost, and what was shared by hand."""
    request = JobRequest(
        action="reconcile",
        image_id=image,
        region=region,
        account_ids=split_values(account),
        organization_arns=split_values(org),
        organizational_unit_arns=split_values(ou),
        repair=repair,
        prune=prune,
    )
    start_job(Connection(url, token, as_json), request, wait)


def status(
    job: JobId,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the job with a progress bar until it ends.")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Show a job: its settings, progress and failed targets (exit 1 if it ended badly)."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        found = client.get_job(job).job
        assert found is not None  # no If-None-Match: never a 304
        if watch:
            return finish(client, found, out, connection)
        if as_json:
            render.print_json(found)
            return outcome_code(found)
        out.print(render.job_table(found))
        if found["regions"] or found["copy"]:
            targets = client.all_targets(job)
            if found["regions"]:
                out.print(render.regions_table(found, targets))
            if found["copy"]:
                out.print(render.copies_table(targets))
        if found["action"] == "reconcile" and found["progress"]["total"]:
            out.print(render.drift_table(client.all_targets(job)))
        if found["progress"]["failed"]:
            failed = client.all_targets(job, status="failed")
            out.print(render.failed_targets_table(failed, found["error"]))
        return outcome_code(found)

    run(connection, body)


def policy(job: JobId, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Print the IAM policy a destination attaches to its own roles to use the job's images."""
    connection = Connection(url, token, as_json=True)

    def body(client: AmiShareClient, out: Console) -> int:
        render.print_json(client.destination_policy(job))
        return EXIT_OK

    run(connection, body)


def cancel(
    job: JobId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Cancel a job: targets not started are cancelled, steps in flight finish."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        cancelled = client.cancel(job)
        if as_json:
            render.print_json(cancelled)
        else:
            out.print(render.job_line(cancelled))
        return EXIT_OK

    run(connection, body)


def retry(
    job: JobId,
    wait: Wait = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Run a finished job's failed targets again, in the same job."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        return follow_or_report(client, client.retry(job), wait, out, connection)

    run(connection, body)


def jobs(
    status: Annotated[
        str | None,
        typer.Option(
            help="queued, running, succeeded, partially_succeeded, failed or cancelled.",
            show_default=False,
        ),
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="share, revoke or reconcile.", show_default=False)
    ] = None,
    image: Annotated[str | None, typer.Option(help="An AMI id.", show_default=False)] = None,
    account: Annotated[
        str | None,
        typer.Option(help="A destination: account ID, org or OU ARN.", show_default=False),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="key=value (or key:value).", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs (1-500).")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a previous page.", show_default=False)
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        page = client.list_jobs(
            status=status,
            action=action,
            image_id=image,
            account_id=account,
            label=label_filter(label),
            limit=limit,
            cursor=cursor,
        )
        if as_json:
            render.print_json(page)
            return EXIT_OK
        out.print(render.jobs_table(page["items"]))
        if page["next_cursor"]:
            out.print(f"More: amishare jobs --cursor {page['next_cursor']}")
        return EXIT_OK

    run(connection, body)


def shares(
    image: Annotated[str | None, typer.Option(help="An AMI id.", show_default=False)] = None,
    region: Annotated[str | None, typer.Option(help="A region.", show_default=False)] = None,
    principal: Annotated[
        str | None,
        typer.Option(help="An account ID, org or OU ARN.", show_default=False),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """What is shared right now (the ledger kept by share and revoke jobs)."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        items = list(client.all_shares(image_id=image, region=region, principal=principal))
        if as_json:
            render.print_json({"items": items, "next_cursor": None})
        else:
            out.print(render.shares_table(items))
        return EXIT_OK

    run(connection, body)


def events(
    job: JobId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """A job's audit trail: every AWS change it made, and the outcome."""
    connection = Connection(url, token, as_json)

    def body(client: AmiShareClient, out: Console) -> int:
        items = list(client.all_events(job))
        if as_json:
            render.print_json({"items": items, "next_cursor": None})
        else:
            out.print(render.events_table(items))
        return EXIT_OK

    run(connection, body)


COMMANDS: tuple[Callable[..., None], ...] = (
    share,
    revoke,
    reconcile,
    status,
    policy,
    cancel,
    retry,
    jobs,
    shares,
    events,
)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `amishare` typer app."""
    for command in COMMANDS:
        app.command(rich_help_panel=PANEL)(command)
