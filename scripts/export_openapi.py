"""Write the committed OpenAPI spec, openapi/openapi.json, from the app itself (`make openapi`).

    python scripts/export_openapi.py            # (re)write openapi/openapi.json
    python scripts/export_openapi.py --check    # exit 1 if the committed spec is stale

Only builds the app; its lifespan never runs, so no database and no AWS are touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "openapi" / "openapi.json"

if str(ROOT) not in sys.path:  # run as a file: make the `app` package importable
    sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402


def build_spec() -> dict[str, Any]:
    # Nothing in the spec depends on settings; fixed values keep the environment out of it.
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", api_tokens=[])
    return create_app(settings).openapi()


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=SPEC_PATH, help="where to write the spec")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file differs"
    )
    args = parser.parse_args(argv)
    text = render(build_spec())
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            print(f"{output} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
