"""The benchmarks still run (N = 5, no latency): they print figures, never assert timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fanout_benchmark_runs_end_to_end() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fanout",
            "--sizes",
            "5",
            "--script-sizes",
            "5",
            "--latency-ms",
            "0",
            "--repeat",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("key_policy", "grant"))]
    assert len(rows) == 2
    assert all(row.rstrip().endswith("yes") for row in rows), done.stdout
