"""The TypeScript client's committed OpenAPI document is the app's current one, so the types
generated from it (clients/typescript/src/schema.d.ts) never drift from the API."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
REGENERATE = (
    "uv run --frozen python clients/typescript/scripts/openapi.py"
    " && npm run generate --prefix clients/typescript"
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "typescript_openapi", CLIENT / "scripts" / "openapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_document_is_the_apps() -> None:
    script = _script()
    current = script.document()
    committed = json.loads((CLIENT / "openapi.json").read_text(encoding="utf-8"))
    assert committed == current, (
        "clients/typescript/openapi.json differs from the API's OpenAPI document; from the"
        f" repository root, run: {REGENERATE}"
    )
    # Byte for byte too, so regenerating it yields no diff.
    assert (CLIENT / "openapi.json").read_text(encoding="utf-8") == script.render(current), (
        f"clients/typescript/openapi.json is not formatted as the script writes it: {REGENERATE}"
    )


def test_generated_types_are_committed() -> None:
    schema = (CLIENT / "src" / "schema.d.ts").read_text(encoding="utf-8")
    # Every path of the document has its entry in the generated types.
    for path in json.loads((CLIENT / "openapi.json").read_text(encoding="utf-8"))["paths"]:
        assert f'"{path}": {{' in schema, (
            f"src/schema.d.ts lacks {path}: run npm run generate --prefix clients/typescript"
        )
