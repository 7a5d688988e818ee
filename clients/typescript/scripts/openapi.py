"""Writes the API's OpenAPI document to clients/typescript/openapi.json (or stdout with ``-``).

Run from the repository root, then regenerate the types:

    uv run --frozen python clients/typescript/scripts/openapi.py
    npm run generate --prefix clients/typescript

tests/clients/test_typescript_schema.py fails while the committed document differs from the
app's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
TARGET = ROOT / "clients" / "typescript" / "openapi.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of an app built with development settings (building it opens no
    connection: only the lifespan does)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("ENVIRONMENT", "development")
    from api.main import create_app
    from switchboard.settings import load_settings

    return create_app(load_settings(ENVIRONMENT="development")).openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(document())
    if argv[1:] == ["-"]:
        sys.stdout.write(text)
    else:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
