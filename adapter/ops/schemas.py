"""The JSON Schema files in `schemas/`, generated from the wire models (DESIGN decision 10).

Run `python -m adapter.ops.schemas` from the project root after changing `adapter/messages.py`;
`tests/unit/test_schemas.py` fails while the files on disk differ from the models.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from adapter.messages import (
    CourseLeft,
    CourseOffered,
    CourseSettingsChanged,
    CourseSyncRequested,
    DigestAnswered,
    DigestRequested,
    EnrollmentChanged,
    PlaceAnswered,
    PlaceOffered,
    PlaceRequested,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

MODELS: dict[str, type[BaseModel]] = {
    "enrollment-changed.v1.json": EnrollmentChanged,
    "course-sync-requested.v1.json": CourseSyncRequested,
    # Not only the two facts of the sync itself: every message the network carries has its file.
    "course-settings-changed.v1.json": CourseSettingsChanged,
    "place-offered.v1.json": PlaceOffered,
    "place-requested.v1.json": PlaceRequested,
    "place-answered.v1.json": PlaceAnswered,
    "course-digest-requested.v1.json": DigestRequested,
    "course-digest-answered.v1.json": DigestAnswered,
    "course-offered.v1.json": CourseOffered,
    "course-left.v1.json": CourseLeft,
}


def generate() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema of each wire model, as it is to be written to `schemas/`."""
    return {
        filename: {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}
        for filename, model in MODELS.items()
    }


def render(schema: dict[str, Any]) -> str:
    """The file text of one schema: pretty JSON, sorted keys, a trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every schema into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in generate().items():
        path = directory / filename
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m adapter.ops.schemas [DIR]`: write the schemas to DIR (default `schemas/`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0]) if args else Path("schemas")
    for path in write(directory):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
