"""The yardstick for status polling: a bare FastAPI route answering a Job-sized JSON body,
served by uvicorn the same way `amishare serve` is."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

BODY = {
    "id": "job-00000000000000000000000000000000",
    "action": "share",
    "status": "running",
    "image_id": "ami-0123456789abcdef0",
    "region": "us-east-1",
    "source_account_id": "123456789012",
    "kms_access": "key_policy",
    "share_snapshots": True,
    "verify": True,
    "copy": None,
    "labels": {},
    "created_at": "2026-11-28T00:00:00Z",
    "started_at": "2026-11-28T00:00:00Z",
    "finished_at": None,
    "progress": {
        "total": 1000,
        "pending": 0,
        "running": 0,
        "succeeded": 1000,
        "failed": 0,
        "cancelled": 0,
    },
    "error": None,
    "attempts": 1,
}

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, object]:
    return BODY


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
