"""How long a worker's event loop is held while it runs big jobs: the figure that decides
whether leases must be renewed from a thread of their own (app/worker/runner.py LeaseKeeper).

    python -m bench.loop_stall [--latency-ms 50] [--sizes 100,1000] [--database-url URL]

`amishare serve` (embedded worker, AWS clients warmed at start) runs one share job per size
with verification from every destination against the AWS double; its own metric
`amishare_event_loop_lag_seconds` says how late the loop ran a 0.1 s timer during the job.
The longest hold is printed beside the lease renewal interval (a third of the lease).
"""

from __future__ import annotations

import argparse
import time
import uuid

from app.sandbox import seed
from bench.procs import Server, amishare_server, aws_double

REGION = "us-east-1"


def lag_figures(server: Server) -> tuple[float, dict[float, float]]:
    """(longest hold so far, cumulative count per histogram bucket)."""
    with server.client() as client:
        text = client.get("/metrics").text
    longest = 0.0
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("amishare_event_loop_lag_max_seconds "):
            longest = float(line.split()[1])
        elif line.startswith("amishare_event_loop_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[1])
    return longest, buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    counts = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    for bound, count in counts.items():
        if total and count >= q * total:
            return bound
    return float("nan")


def new_accounts(n: int) -> list[str]:
    base = uuid.uuid4().int % 10**5
    return [f"7{base:05d}{i:06d}" for i in range(n)]


def run_job(server: Server, image_id: str, targets: list[str]) -> tuple[float, str]:
    with server.client() as client:
        started = time.perf_counter()
        answer = client.post(
            "/v1/jobs",
            json={
                "action": "share",
                "image_id": image_id,
                "region": REGION,
                "account_ids": targets,
                "verify": True,
                "kms_access": "grant",
            },
        )
        answer.raise_for_status()
        job_id = answer.json()["id"]
        while (status := client.get(f"/v1/jobs/{job_id}").json()["status"]) in (
            "queued",
            "running",
        ):
            time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job_id}").json()
        if status != "succeeded":
            print(job["error"], job["progress"])
        return time.perf_counter() - started, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    settings = {"database_url": args.database_url} if args.database_url else {}
    with aws_double() as double, amishare_server(double.url, **settings) as server:
        key = seed.create_customer_key(double.url)
        double.set_faults(latency_ms=args.latency_ms)
        rows = []
        for n in (int(s) for s in args.sizes.split(",")):
            image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
            _, before = lag_figures(server)
            double.open_accounts(accounts := new_accounts(n))
            seconds, status = run_job(server, image.image_id, accounts)
            longest, after = lag_figures(server)
            p50, p99 = quantile(before, after, 0.5), quantile(before, after, 0.99)
            rows.append((n, status, seconds, p50, p99, longest))
    print(
        "\nEvent loop held during a share job with verification (AWS latency "
        f"{args.latency_ms:.0f} ms)"
    )
    print(
        "destinations | status    | job s | p50 hold s ≤ | p99 hold s ≤ | longest s (process) "
        "| renewal every (lease 30 s / 3 s)"
    )
    for n, status, seconds, p50, p99, longest in rows:
        print(
            f"{n:>12} | {status:9} | {seconds:5.1f} | {p50:12} | {p99:12} | {longest:19.3f} "
            "| 10 s / 1 s"
        )


if __name__ == "__main__":
    main()
