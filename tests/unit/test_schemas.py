"""The wire contract on disk matches the models."""

from __future__ import annotations

import json

from adapter.ops.schemas import FOLDER, generate


def test_schema_files_match_the_models() -> None:
    """Every file in schemas/ is what the models generate; run
    `python -m adapter.ops.schemas` after changing a message."""
    for name, text in generate().items():
        path = FOLDER / name
        assert path.exists(), f"schemas/{name} is missing: run python -m adapter.ops.schemas"
        assert path.read_text(encoding="utf-8") == text, (
            f"schemas/{name} is out of date: run python -m adapter.ops.schemas"
        )


def test_every_message_names_its_schema_version() -> None:
    """Each schema requires the CloudEvents envelope and pins `schemaversion` to 1."""
    for text in generate().values():
        schema = json.loads(text)
        assert schema["properties"]["schemaversion"]["const"] == 1
        assert {"id", "source", "time", "data"} <= set(schema["required"])
