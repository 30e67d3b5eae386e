"""The built wheel runs on its own: installed into a fresh virtualenv (the dependencies lent
from the project's .venv, the project itself not), `amishare migrate` and `amishare serve`
work from any directory, with the migrations the wheel carries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from setuptools import find_namespace_packages, find_packages

ROOT = Path(__file__).resolve().parents[2]
# What building the wheel reads (as the Dockerfile's build stage copies it).
BUILD_INPUTS = ("pyproject.toml", "README.md", "app", "migrations")
MIGRATION_FILES = {
    "app/migrations/env.py",
    "app/migrations/script.py.mako",
    *(f"app/{p.relative_to(ROOT)}" for p in (ROOT / "migrations/versions").glob("*.py")),
}


def test_pyproject_lists_every_package() -> None:
    """The packages are listed by hand (for the migrations' mapping): none may be missing."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set(find_packages(ROOT, include=["app", "app.*"]))
    on_disk |= {f"app.migrations.{p}" for p in find_namespace_packages(ROOT / "migrations")}
    on_disk |= {"app.migrations"}
    on_disk -= {p for p in on_disk if "__pycache__" in p}
    assert set(listed["packages"]) == on_disk
    assert listed["package-dir"] == {"app.migrations": "migrations"}


def _offline_env(**values: str) -> dict[str, str]:
    """No index, no user site, no PYTHONPATH, no AMISHARE_* setting of whoever runs this."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AMISHARE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    return {**env, "PIP_NO_INDEX": "1", "PYTHONNOUSERSITE": "1", **values}


def _run(*args: str | Path, **options: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **options
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


def build_wheel(tmp: Path) -> Path:
    """`pip wheel` of a copy of the sources (a stale build/ in the checkout cannot leak into
    it), with the .venv's setuptools: no build isolation, so no download."""
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp / "dist"
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--wheel-dir", dist, source, env=_offline_env(),
    )  # fmt: skip
    (wheel,) = dist.glob("amishare-*.whl")
    return wheel


def venv_with_wheel(tmp: Path, wheel: Path) -> Path:
    """A new virtualenv with the wheel alone installed in it; the dependencies are the .venv's,
    seen through a .pth file. A path in a .pth file is only added to sys.path: the .pth files
    there (the project's editable install among them) are not run."""
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        "--no-index", wheel, env=_offline_env(),
    )  # fmt: skip
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib.stdout.strip()) / "amishare_test_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in sorted(ours))
    )
    return venv


def _wait_ready(process: subprocess.Popen[str], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer 200 at {url}:\n{log.read_text()}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_installed_wheel_migrates_and_serves(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert names >= MIGRATION_FILES, MIGRATION_FILES - names
    assert not [n for n in names if n.startswith(("tests/", "migrations/", "bench/"))]

    venv = venv_with_wheel(tmp_path, wheel)
    work = tmp_path / "elsewhere"  # not a checkout: no migrations/ nor app/ here
    work.mkdir()
    database = work / "amishare.db"
    env = _offline_env(AMISHARE_DATABASE_URL=f"sqlite+aiosqlite:///{database}")

    # The wheel's app runs, not the checkout's (the editable install is not visible).
    probe = _run(
        venv / "bin" / "python", "-c",
        "import json, sys, app, app.db.migrate as m, fastapi; print(json.dumps(["
        "app.__file__, str(m.migrations_dir()), fastapi.__file__, "
        "[n for n in sys.modules if 'editable' in n]]))",
        env=env, cwd=work,
    )  # fmt: skip
    app_file, migrations, fastapi_file, editable = json.loads(probe.stdout)
    assert Path(app_file).is_relative_to(venv), app_file
    assert Path(migrations).is_relative_to(venv), migrations
    assert not Path(fastapi_file).is_relative_to(venv)  # lent from the .venv
    assert editable == []

    amishare = venv / "bin" / "amishare"
    migrated = _run(amishare, "migrate", env=env, cwd=work)
    assert "database is up to date" in migrated.stdout
    assert database.is_file()

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(amishare), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=work,
        )
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}/readyz", log)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    # uvicorn shuts down gracefully, then raises the signal again (exit -15 is that).
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete." in log.read_text()
