"""A bounded HTTP load generator, run as its own process so that it does not share the server's
CPU budget in-process: N concurrent connections, for S seconds, on loopback only.

    python -m bench.loadgen URL --concurrency 50 --seconds 10 [--header 'Name: value']

Prints one JSON line: requests, seconds, rps, p50_ms, p99_ms, statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from urllib.parse import urlparse

import aiohttp


async def hammer(
    url: str, concurrency: int, seconds: float, headers: dict[str, str]
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    # aiohttp, not httpx: httpx's pool serialises 50 concurrent requests and would measure itself.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url) as answer:
                    await answer.read()
                    statuses[answer.status] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "statuses": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only targets loopback")
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(hammer(args.url, args.concurrency, args.seconds, headers))))


if __name__ == "__main__":
    main()
