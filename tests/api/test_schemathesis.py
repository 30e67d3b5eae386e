"""Property-based: requests generated from the served spec (valid and invalid) never get a 5xx,
and every answer conforms to the spec (status, media type, body schema).

The app runs for real: uvicorn on 127.0.0.1 on an ephemeral port, a SQLite database and the AWS
double. Its worker is off (jobs stay queued): what is checked here is every HTTP answer, and the
worker's load would only slow the run down."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from app.sandbox.aws_double import AwsDouble
from tests.conftest import WRITER_TOKEN, make_settings

# schemathesis's own strategies use `random`; that is its business, not a finding here.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

AUTHORIZATION = {"Authorization": f"Bearer {WRITER_TOKEN}"}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, aws_double: AwsDouble) -> Iterator[str]:
    """The app under uvicorn in a thread; its base URL."""
    database: Path = tmp_path_factory.mktemp("schemathesis") / "amishare.db"
    url = f"sqlite+aiosqlite:///{database}"
    upgrade(url)
    app = create_app(make_settings(url, aws_double, embedded_worker=False))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


# The app's own spec (test_openapi checks that it is the committed one and the served one).
# Loaded at import: schemathesis's lazy `from_fixture` does not work with pytest 9.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_answers_within_its_contract(case: Case[Any], live_server: str) -> None:
    case.call_and_validate(base_url=live_server, headers=AUTHORIZATION, checks=CHECKS, timeout=10)
