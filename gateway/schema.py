"""JSON Schema files of the event contract, generated from the models in common/events.py.

`python -m gateway.schema` rewrites gateway/schemas/*.json; a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.events import DATA_MODELS, Event

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document for the envelope and each event type's `data`."""
    docs: dict[str, dict[str, Any]] = {}
    envelope = Event.model_json_schema(by_alias=True, mode="serialization")
    envelope["$id"] = "https://mes-gateway.invalid/schema/mes.event-1.json"
    envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # Tie each `type` to its data shape, so validators outside Python enforce it too.
    envelope["allOf"] = [
        {
            "if": {"properties": {"type": {"const": kind}}},
            "then": {"properties": {"data": {"$ref": f"#/$defs/{model.__name__}"}}},
        }
        for kind, model in DATA_MODELS.items()
    ]
    docs["mes.event-1.json"] = envelope
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_documents(docs: dict[str, dict[str, Any]], directory: Path) -> list[Path]:
    """Write each schema document as `directory/<name>`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in docs.items():
        path = directory / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def main(docs: dict[str, dict[str, Any]], default_dir: Path) -> None:
    """`python -m …schema [DIR]`: regenerate the schema files and list them."""
    for path in write_documents(docs, Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir):
        print(path)


if __name__ == "__main__":
    main(documents(), SCHEMA_DIR)
