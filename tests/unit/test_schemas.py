"""The wire contract on disk (`schemas/`) is what the pydantic models say (DESIGN decision 10)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from adapter.messages import ENROLLMENT_CHANGED, SCHEMA_VERSION
from adapter.ops import schemas

FOLDER = Path(__file__).resolve().parents[2] / "schemas"
REGENERATE = "run `.venv/bin/python -m adapter.ops.schemas` in the project root and commit schemas/"


def test_no_schema_file_is_missing_or_left_over() -> None:
    """schemas/ holds exactly one JSON file per wire model, no stale ones."""
    on_disk = {path.name for path in FOLDER.glob("*.json")}
    assert on_disk == set(schemas.generate()), f"schemas/ does not match the models: {REGENERATE}"


@pytest.mark.parametrize("filename", sorted(schemas.generate()))
def test_schema_file_matches_its_model(filename: str) -> None:
    """Each file in schemas/ is, byte for byte, what its model generates today."""
    path = FOLDER / filename
    assert path.is_file(), f"schemas/{filename} is missing: {REGENERATE}"
    text = path.read_text(encoding="utf-8")
    expected = schemas.generate()[filename]
    assert json.loads(text) == expected, f"schemas/{filename} drifted from its model: {REGENERATE}"
    assert text == schemas.render(expected), f"schemas/{filename} is not formatted: {REGENERATE}"


def test_main_writes_pretty_sorted_json_with_a_trailing_newline(tmp_path: Path) -> None:
    """`python -m adapter.ops.schemas DIR` writes every schema as sorted, indented JSON."""
    assert schemas.main([str(tmp_path)]) == 0
    for filename, schema in schemas.generate().items():
        text = (tmp_path / filename).read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert text.startswith('{\n  "$defs"')  # sorted: `$defs` and `$schema` come first
        assert json.loads(text) == schema


def test_every_schema_pins_the_envelope_and_its_version() -> None:
    """Each message requires the CloudEvents attributes, forbids extras and names schema v1."""
    for filename, schema in schemas.generate().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", filename
        assert schema["additionalProperties"] is False, filename
        assert schema["properties"]["schemaversion"]["const"] == SCHEMA_VERSION, filename
        assert schema["properties"]["specversion"]["const"] == "1.0", filename
        assert {"id", "source", "time", "subject", "data"} <= set(schema["required"]), filename


def test_the_participant_schema_allows_only_the_four_personal_fields() -> None:
    """The contract itself forbids anything personal beyond name, first name, email, phone."""
    schema = schemas.generate()["enrollment-changed.v1.json"]
    assert schema["properties"]["type"]["const"] == ENROLLMENT_CHANGED
    participant = schema["$defs"]["ParticipantModel"]
    assert set(participant["properties"]) == {
        "last_name",
        "first_name",
        "main_email",
        "main_phone",
    }
    assert participant["additionalProperties"] is False


def test_asyncapi_document_names_the_channels_and_references_every_schema() -> None:
    """schemas/asyncapi.yaml is AsyncAPI 2.6 with the sync channels, each naming its
    origin, and its message payloads point at exactly the generated schema files."""
    text = (FOLDER / "asyncapi.yaml").read_text(encoding="utf-8")
    assert re.search(r"^asyncapi: 2\.6\.0$", text, re.MULTILINE)
    for channel in (
        "enr.{master}.{course}.{origin}.anon",
        "enr.{master}.{course}.{origin}.personal",
        "ctl.{master}.{course}.{origin}",
        "req.{master}.{origin}",
        "rep.{school}.{master}",
        "syn.{requester}.{master}.{course}.{origin}.anon",
        "syn.{requester}.{master}.{course}.{origin}.personal",
    ):
        assert re.search(rf"^  {re.escape(channel)}:$", text, re.MULTILINE), channel
    assert re.search(r"^\s+type: topic$", text, re.MULTILINE)
    referenced = set(re.findall(r"\$ref: '\./([^']+\.json)'", text))
    assert referenced == set(schemas.generate()), "asyncapi.yaml and schemas/*.json disagree"
