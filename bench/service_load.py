"""Status polling, job intake and memory of `amishare serve`, side by side with a bare route.

python -m bench.service_load [--pollers 50] [--seconds 10] [--memory-jobs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from app.sandbox import seed
from bench.fanout import accounts, print_table
from bench.procs import Server, amishare_server, aws_double, free_port, wait_for_http

REGION = "us-east-1"


def loadgen(url: str, pollers: int, seconds: float, headers: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", url, "--concurrency", str(pollers)]
    command += ["--seconds", str(seconds)]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    process = subprocess.Popen(command)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/bare", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def finished_job(server: Server, n: int) -> str:
    """A job with n targets, finished (its image does not exist: it fails fast)."""
    with server.client() as client:
        body = {
            "action": "share",
            "image_id": "ami-00000000000000bad",
            "region": REGION,
            "source_account_id": seed.SOURCE_ACCOUNT_ID,
            "account_ids": accounts(n),
        }
        job_id: str = client.post("/v1/jobs", json=body).json()["id"]
        while client.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "running"):
            time.sleep(0.1)
    return job_id


def polling(server: Server, pollers: int, seconds: float) -> list[tuple[str, ...]]:
    job_id = finished_job(server, 1000)
    auth = {"Authorization": f"Bearer {server.token}"}
    with server.client() as client:
        etag = client.get(f"/v1/jobs/{job_id}").headers["ETag"]
    url = f"{server.url}/v1/jobs/{job_id}"
    runs = {"GET /v1/jobs/{id} (200)": loadgen(url, pollers, seconds, auth)}
    runs["GET /v1/jobs/{id} (304)"] = loadgen(url, pollers, seconds, auth | {"If-None-Match": etag})
    with bare_server() as bare:
        runs["bare FastAPI route"] = loadgen(f"{bare}/bare", pollers, seconds, {})
    bare_rps = runs["bare FastAPI route"]["rps"]
    return [
        (
            name,
            f"{r['rps']:.0f}",
            f"{r['rps'] / bare_rps:.0%}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            json.dumps(r["statuses"]),
        )
        for name, r in runs.items()
    ]


async def _post_jobs(server: Server, jobs: int, concurrency: int) -> float:
    bound = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:

        async def post() -> None:
            async with bound:
                body = {
                    "action": "share",
                    "image_id": "ami-00000000000000bad",
                    "region": REGION,
                    "source_account_id": seed.SOURCE_ACCOUNT_ID,
                    "account_ids": accounts(100),
                }
                answer = await client.post("/v1/jobs", json=body)
                answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(jobs)))
        return jobs / (time.perf_counter() - started)


def intake(double_url: str) -> list[tuple[str, ...]]:
    with amishare_server(double_url, embedded_worker="false") as server:
        sequential = asyncio.run(_post_jobs(server, 50, 1))
        concurrent = asyncio.run(_post_jobs(server, 200, 20))
    return [("sequential", f"{sequential:.1f}"), ("20 concurrent", f"{concurrent:.1f}")]


def wait_until_idle(client: httpx.Client) -> None:
    """Until no job is queued or running."""
    while any(
        client.get("/v1/jobs", params={"status": status, "limit": 1}).json()["items"]
        for status in ("queued", "running")
    ):
        time.sleep(0.2)


def memory(server: Server, double: Any, jobs: int) -> list[tuple[str, ...]]:
    """RSS after 100 and after `jobs` finished one-destination share jobs."""
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    marks: dict[int, float] = {}
    with server.client() as client:
        for count in range(1, jobs + 1):
            body = {
                "action": "share",
                "image_id": image.image_id,
                "region": REGION,
                "source_account_id": seed.SOURCE_ACCOUNT_ID,
                "account_ids": accounts(1),
                "verify": False,
                # Grants: a thousand accounts would not fit one key policy's 32 KB.
                "kms_access": "grant",
            }
            client.post("/v1/jobs", json=body).raise_for_status()
            if count in (100, jobs):
                wait_until_idle(client)
                marks[count] = server.rss_mb()
    return [(f"after {n} finished jobs", f"{rss:.0f}") for n, rss in marks.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--memory-jobs", type=int, default=1000)
    parser.add_argument(
        "--database-url", help="e.g. postgresql+asyncpg://postgres@127.0.0.1/bench (empty db)"
    )
    args = parser.parse_args()
    database = {"database_url": args.database_url} if args.database_url else {}
    with aws_double() as double, amishare_server(double.url, **database) as server:
        poll_rows = polling(server, args.pollers, args.seconds)
        intake_rows = intake(double.url)
        memory_rows = memory(server, double, args.memory_jobs)
        peak = server.peak_rss_mb()
    print(
        f"\nStatus polling: {args.pollers} concurrent pollers, {args.seconds:.0f}s each, "
        "job with 1,000 targets"
    )
    print_table(("route", "req/s", "of bare", "p50 ms", "p99 ms", "statuses"), poll_rows)
    print("\nJob intake: POST /v1/jobs with 100 destinations each (worker off)")
    print_table(("mode", "jobs/s"), intake_rows)
    print("\nMemory of amishare serve")
    print_table(("when", "RSS MB"), [*memory_rows, ("peak across the run", f"{peak:.0f}")])


if __name__ == "__main__":
    main()
