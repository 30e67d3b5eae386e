"""The AWS double ships in every wheel, but moto is only in the `sandbox` extra: nothing the
service runs may import it (only `amishare sandbox`, lazily, and the tests)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVICE_MODULES = ("app.main", "app.cli", "app.worker.process", "app.service.jobs")
CHECK = """
import json, sys
for name in SERVICE_MODULES:
    __import__(name)
from app.cli import cli
for args in (["--help"], ["serve", "--help"], ["worker", "--help"], ["sandbox", "--help"]):
    try:
        cli(args)
    except SystemExit as exit_:
        assert exit_.code == 0, (args, exit_.code)
double = {
    "moto" if name.startswith("moto.") else name for name in sys.modules
    if name == "moto" or name.startswith("moto.")
    or name in ("app.sandbox.aws_double", "app.sandbox.moto_ext")
}
print("\\nIMPORTED " + json.dumps(sorted(double)))
""".replace("SERVICE_MODULES", repr(SERVICE_MODULES))


def test_the_service_and_the_cli_never_import_moto_or_the_double() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout  # the help was printed
    imported = json.loads(result.stdout.rsplit("IMPORTED ", 1)[1])
    assert imported == [], f"imported by the service or `amishare --help`: {imported}"
