"""Fan-out: one share job to N destinations, against the per-account script and the lower bound.

    python -m bench.fanout [--latency-ms 50] [--sizes 10,100,1000] [--script-sizes 10,100]
                           [--repeat 3]

Everything runs on loopback: the project's AWS double (moto + extension) with latency injected
at its HTTP layer, and `amishare serve` on SQLite. The script runs in full for --script-sizes;
for larger N its time is extrapolated from its measured time per destination (marked `~`).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from app.sandbox import seed
from bench.procs import (
    DESTINATION_ROLE,
    Double,
    Server,
    amishare_server,
    aws_double,
    cpu_seconds,
)
from bench.script_baseline import share_like_a_script

REGION = "us-east-1"
SOURCE = seed.SOURCE_ACCOUNT_ID


@dataclass
class FanoutResult:
    mode: str
    n: int
    seconds: float
    succeeded: bool
    status: str
    source_calls: Counter[str]
    destination_calls: Counter[str]
    critical_path_calls: int
    source_trips: int  # the source's share of the critical path
    cpu_amishare: float
    cpu_double: float


def accounts(n: int) -> list[str]:
    base = uuid.uuid4().int % 10**5
    return [f"8{base:05d}{i:06d}" for i in range(n)]


def run_amishare(
    server: Server,
    double: Double,
    image: seed.SeededImage,
    n: int,
    mode: str,
    expected: int | None = None,
    **options: Any,
) -> FanoutResult:
    targets = accounts(n)
    double.open_accounts(targets)
    for region in options.get("regions", []):
        double.open_accounts(targets, region)
    double.clear_requests()
    cpu_before = cpu_seconds(server.process.pid), cpu_seconds(double.process.pid)
    with server.client() as client:
        started = time.perf_counter()
        answer = client.post(
            "/v1/jobs",
            json={
                "action": "share",
                "image_id": image.image_id,
                "region": REGION,
                "source_account_id": SOURCE,
                "account_ids": targets,
                "kms_access": mode,
                **options,
            },
        )
        answer.raise_for_status()
        job_id = answer.json()["id"]
        etag = None
        while True:
            headers = {"If-None-Match": etag} if etag else {}
            polled = client.get(f"/v1/jobs/{job_id}", headers=headers)
            if polled.status_code == 200:
                etag = polled.headers.get("ETag")
                job = polled.json()
                if job["status"] not in ("queued", "running"):
                    break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    cpu_amishare = cpu_seconds(server.process.pid) - cpu_before[0]
    cpu_double = cpu_seconds(double.process.pid) - cpu_before[1]
    source, destinations, path, source_trips = classify_calls(double.requests())
    return FanoutResult(
        mode,
        n,
        seconds,
        job["progress"]["succeeded"] == (expected or n),
        job["status"],
        source,
        destinations,
        path,
        source_trips,
        cpu_amishare,
        cpu_double,
    )


def median_run(runs: list[FanoutResult]) -> FanoutResult:
    """The run of median time (this machine is noisy); a failed run is never hidden."""
    failed = [r for r in runs if not r.succeeded]
    if failed:
        return failed[0]
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def classify_calls(
    requests: list[dict[str, Any]],
) -> tuple[Counter[str], Counter[str], int, int]:
    """Calls made in the source account and in the destinations, by API; and the sequential
    round trips on amishare's critical path: the source calls in order, where the calls of one
    step that run side by side (the CreateGrant calls, every snapshot's permission reads, every
    snapshot's and every chunk's permission calls, the launch permission chunks) count once,
    plus the longest destination chain (AssumeRole, then rounds of DescribeImages with the key
    checks beside them)."""
    source: Counter[str] = Counter()
    destinations: Counter[str] = Counter()
    chains: Counter[str] = Counter()
    for request in requests:
        api = f"{request['service']}:{request['action']}"
        params = request.get("params") or {}
        if api == "sts:AssumeRole" and DESTINATION_ROLE in str(params.get("RoleArn", "")):
            destinations[api] += 1
            chains[str(params["RoleArn"]).split(":")[4]] += 1
        elif request["account"] == SOURCE:
            source[api] += 1
        else:
            destinations[api] += 1
            if api == "ec2:DescribeImages":
                chains[request["account"]] += 1
    side_by_side = (
        "kms:CreateGrant",
        "ec2:DescribeSnapshotAttribute",  # every snapshot's permissions, read at once
        "ec2:ModifySnapshotAttribute",
        "ec2:ModifyImageAttribute",
    )
    sequential = sum(c for api, c in source.items() if api not in side_by_side)
    sequential += sum(1 for api in side_by_side if source[api])
    return source, destinations, sequential + max(chains.values(), default=0), sequential


def run_script(double: Double, key: seed.SeededKey, snapshots: int, n: int) -> float:
    image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=snapshots)
    targets = accounts(n)
    double.open_accounts(targets)
    return share_like_a_script(
        double.url, image.image_id, list(image.snapshot_ids), key.key_id, targets
    )


def fmt_calls(calls: Counter[str]) -> str:
    return ", ".join(f"{api.split(':')[1]}x{count}" for api, count in sorted(calls.items()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--script-sizes", default="10,100")
    parser.add_argument("--target-concurrency", default="128")
    parser.add_argument(
        "--repeat", type=int, default=3, help="amishare runs per N and mode; the median is shown"
    )
    parser.add_argument(
        "--copy-sizes", default="100", help="N for a share with `copy` (empty: none)"
    )
    parser.add_argument(
        "--copy-seconds", type=float, default=5.0, help="how long the double's copies take"
    )
    parser.add_argument(
        "--region-sizes", default="100", help="N for a share in several Regions (empty: none)"
    )
    parser.add_argument(
        "--regions",
        default="eu-west-1,ap-south-1",
        help="the Regions besides us-east-1 of that share",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    script_sizes = {int(s) for s in args.script_sizes.split(",") if s}
    latency = args.latency_ms / 1000

    with (
        aws_double() as double,
        amishare_server(double.url, target_concurrency=args.target_concurrency) as server,
    ):
        double.set_faults(latency_ms=args.latency_ms, throttle_rate=args.throttle_rate, seed=1)
        results: list[FanoutResult] = []
        script_seconds: dict[int, tuple[float, bool]] = {}
        per_destination = None
        for n in sizes:
            for mode in ("key_policy", "grant"):
                if mode == "key_policy" and n > 400:
                    continue  # 1,000 root ARNs do not fit AWS's 32 KB key policy: see the doc
                runs = []
                for _ in range(args.repeat):
                    # A fresh key and image each run: grants and policy statements left by
                    # earlier runs would otherwise make each run's key larger than the last.
                    key = seed.create_customer_key(double.url)
                    image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
                    runs.append(run_amishare(server, double, image, n, mode))
                    print(
                        f"amishare {mode} N={n}: {runs[-1].seconds:.2f}s {runs[-1].status}",
                        flush=True,
                    )
                results.append(median_run(runs))
            if n in script_sizes:
                fresh_key = seed.create_customer_key(double.url)
                seconds = run_script(double, fresh_key, 2, n)
                script_seconds[n] = (seconds, False)
                per_destination = seconds / n
                print(f"script N={n}: {seconds:.2f}s", flush=True)
            elif per_destination is not None:
                script_seconds[n] = (per_destination * n, True)
        copy_results = [
            run_copies(server, double, n, args.copy_seconds, args.repeat, args.latency_ms)
            for n in (int(c) for c in args.copy_sizes.split(",") if c)
        ]
        other_regions = [r for r in args.regions.split(",") if r]
        region_results = [
            run_regions(server, double, n, other_regions, args.copy_seconds, args)
            for n in (int(c) for c in args.region_sizes.split(",") if c)
        ]
        peak = server.peak_rss_mb()

    print()
    print(
        f"latency {args.latency_ms:.0f} ms per AWS call, throttling {args.throttle_rate:.0%}; "
        f"2 snapshots, 1 customer-managed key; verification on; "
        f"amishare: median of {args.repeat} runs"
    )
    header = (
        "mode",
        "N",
        "amishare s",
        "script s",
        "script/amishare",
        "amishare/lower bound",
        "source calls",
        "destination calls",
        "CPU s amishare / double",
        "all ok",
    )
    rows = []
    for r in results:
        script, estimated = script_seconds.get(r.n, (float("nan"), False))
        bound = r.critical_path_calls * latency
        versus_bound = f"{r.seconds / bound:.2f}x" if bound else "n/a (no latency)"
        rows.append(
            (
                r.mode,
                str(r.n),
                f"{r.seconds:.2f}",
                ("~" if estimated else "") + f"{script:.1f}",
                ("~" if estimated else "") + f"{script / r.seconds:.1f}x",
                f"{versus_bound} ({r.critical_path_calls} trips)",
                fmt_calls(r.source_calls),
                fmt_calls(r.destination_calls),
                f"{r.cpu_amishare:.2f} / {r.cpu_double:.2f}",
                "yes" if r.succeeded else f"no ({r.status})",
            )
        )
    print_table(header, rows)
    print()
    print(
        f"CPU s: processor time amishare serve and the double each used from the POST to the "
        f"final status ({os.cpu_count()} cores here)"
    )
    for line in growth(results):
        print(line)
    if copy_results:
        print_copies(copy_results, args.copy_seconds, latency)
    if region_results:
        print_regions(region_results, args.copy_seconds)
    print(f"peak RSS of amishare serve: {peak:.0f} MB")


def run_copies(
    server: Server, double: Double, n: int, copy_seconds: float, repeat: int, latency_ms: float
) -> FanoutResult:
    """A share with `copy` (no verification: every destination DescribeImages is then a look
    at its copy), each copy taking `copy_seconds` in the double; median of `repeat` runs."""
    double.set_faults(latency_ms=latency_ms, copy_seconds=copy_seconds, seed=1)
    runs = []
    for _ in range(repeat):
        key = seed.create_customer_key(double.url)
        image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
        runs.append(run_amishare(server, double, image, n, "key_policy", copy={}, verify=False))
        print(f"amishare copy N={n}: {runs[-1].seconds:.2f}s {runs[-1].status}", flush=True)
    double.set_faults(latency_ms=latency_ms, seed=1)
    return median_run(runs)


def run_regions(
    server: Server,
    double: Double,
    n: int,
    regions: list[str],
    copy_seconds: float,
    args: argparse.Namespace,
) -> tuple[FanoutResult, FanoutResult]:
    """The same share (key policy, verification on) in us-east-1 alone, then in it and
    `regions`, where the source's copies take `copy_seconds`; medians of --repeat runs."""
    double.set_faults(latency_ms=args.latency_ms, copy_seconds=copy_seconds, seed=1)
    alone: list[FanoutResult] = []
    everywhere: list[FanoutResult] = []
    for _ in range(args.repeat):
        key = seed.create_customer_key(double.url)
        image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
        alone.append(run_amishare(server, double, image, n, "key_policy"))
        keys = {r: seed.create_customer_key(double.url, region=r).key_arn for r in regions}
        for region in regions:
            double.open_accounts([SOURCE], region)  # the source's state there, built before
        image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
        everywhere.append(
            run_amishare(
                server,
                double,
                image,
                n,
                "key_policy",
                regions=regions,
                region_kms_key_ids=keys,
                expected=n * (1 + len(regions)),
            )
        )
        print(
            f"amishare N={n}: 1 Region {alone[-1].seconds:.2f}s, {1 + len(regions)} Regions "
            f"{everywhere[-1].seconds:.2f}s {everywhere[-1].status}",
            flush=True,
        )
    double.set_faults(latency_ms=args.latency_ms, seed=1)
    return median_run(alone), median_run(everywhere)


def print_regions(results: list[tuple[FanoutResult, FanoutResult]], copy_seconds: float) -> None:
    """Several Regions beside one: the target is at most 1.5x one Region's time plus one
    copy time (the Regions' copies and shares run side by side)."""
    print()
    print(
        f"Share in several Regions (key policy, verification on; a copy takes {copy_seconds:.0f} s)"
    )
    header = (
        "N",
        "1 Region s",
        "Regions",
        "all Regions s",
        "target s",
        "of target",
        "source calls",
        "all ok",
    )
    rows = []
    for alone, everywhere in results:
        target = 1.5 * alone.seconds + copy_seconds
        regions = everywhere.source_calls["ec2:CopyImage"] + 1
        rows.append(
            (
                str(alone.n),
                f"{alone.seconds:.2f}",
                str(regions),
                f"{everywhere.seconds:.2f}",
                f"{target:.2f}",
                f"{everywhere.seconds / target:.2f}x",
                fmt_calls(everywhere.source_calls),
                "yes" if alone.succeeded and everywhere.succeeded else "no",
            )
        )
    print_table(header, rows)


def print_copies(results: list[FanoutResult], copy_seconds: float, latency: float) -> None:
    """Time beside the lower bound: the source's critical path, then each destination's
    AssumeRole, CopyImage and one DescribeImages, plus one copy time."""
    print()
    print(f"Share with copy: each copy takes {copy_seconds:.0f} s in the double; no verification")
    header = (
        "N",
        "amishare s",
        "lower bound s",
        "amishare/bound",
        "DescribeImages per copy",
        "CopyImage calls",
        "all ok",
    )
    rows = []
    for r in results:
        bound = (r.source_trips + 3) * latency + copy_seconds
        per_copy = r.destination_calls["ec2:DescribeImages"] / r.n
        rows.append(
            (
                str(r.n),
                f"{r.seconds:.2f}",
                f"{bound:.2f}",
                f"{r.seconds / bound:.2f}x",
                f"{per_copy:.1f}",
                str(r.destination_calls["ec2:CopyImage"]),
                "yes" if r.succeeded else f"no ({r.status})",
            )
        )
    print_table(header, rows)


def growth(results: list[FanoutResult]) -> list[str]:
    """How each mode's time grows with N, largest N against every smaller one."""
    lines = []
    for mode in ("key_policy", "grant"):
        runs = sorted((r.n, r.seconds) for r in results if r.mode == mode)
        if len(runs) < 2:
            continue
        n, seconds = runs[-1]
        ratios = ", ".join(f"{seconds / s:.1f}x N={m}" for m, s in runs[:-1])
        lines.append(f"{mode}: N={n} took {ratios}")
    return lines


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
