"""The admin DB's schema mapping (issue 8): table and column names from the config, the
reference schema by default, readable errors naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapter.config import ConfigError, load_settings
from adapter.store import admin
from adapter.store.admin import OPTIONAL, REFERENCE_SCHEMA, SchemaMapping, build

BASE = """\
[school]
id = "vhs-ka"
name = "vhs Karlsruhe"

[state_db]
url = "sqlite:///state.db"

[admin_db]
url = "sqlite:///admin.db"
"""


@pytest.fixture(autouse=True)
def no_vhs_sync_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables of the developer's shell or of other tests must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("VHS_SYNC_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, mapping: str) -> SchemaMapping:
    path = tmp_path / "school.toml"
    path.write_text(BASE + mapping, encoding="utf-8")
    return load_settings(path).admin_db.mapping()


def test_without_a_mapping_the_tables_are_the_reference_schema(tmp_path: Path) -> None:
    """No mapping: KURSE, TEILNEHM, BELEGUNG with every column, `Master_knr` included."""
    mapping = load(tmp_path, "")
    assert mapping == REFERENCE_SCHEMA
    _, tables = build(mapping)
    assert [t.name for t in tables.values()] == ["KURSE", "TEILNEHM", "TEILNEHM_KOMM", "BELEGUNG"]
    assert tables["courses"].c.master_number.name == "Master_knr"
    assert tables["enrollments"].c.waitlisted_since.name == "WL_SEIT"


def test_tables_schema_and_columns_are_renamed_and_absent_ones_left_out(tmp_path: Path) -> None:
    """Each table and column takes the name the config gives; "" leaves a column out."""
    mapping = load(
        tmp_path,
        """
schema = "dbo"
[admin_db.tables]
enrollments = "BELEG"
[admin_db.columns.enrollments]
status = "STATUS"
waitlisted_since = ""
waitlisted_by_admin = ""
[admin_db.columns.courses]
master_school = ""
""",
    )
    _, tables = build(mapping)
    enrollments = tables["enrollments"]
    assert (enrollments.schema, enrollments.name) == ("dbo", "BELEG")
    assert enrollments.c.status.name == "STATUS"
    assert "waitlisted_since" not in enrollments.c
    assert "master_school" not in tables["courses"].c
    assert tables["courses"].name == "KURSE"  # not named: as in the reference schema
    assert mapping.absent("enrollments") == {"waitlisted_since", "waitlisted_by_admin"}


def test_the_kufersql_example_config_lacks_every_optional_column() -> None:
    """examples/kufersql.toml maps a real KuferSQL: none of the optional columns is needed."""
    mapping = load_settings(Path("examples/kufersql.toml")).admin_db.mapping()
    assert mapping.absent("courses") == set(OPTIONAL["courses"])
    assert mapping.absent("enrollments") == set(OPTIONAL["enrollments"])


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ('[admin_db.tables]\nkurse = "KURSE"\n', r"admin_db.*tables\.kurse: no such table"),
        ('[admin_db.tables]\ncourses = " "\n', r"tables\.courses: the table name is empty"),
        (
            '[admin_db.columns.enrollments]\nstatuss = "STATUS"\n',
            r"columns\.enrollments\.statuss: no such column",
        ),
        (
            '[admin_db.columns.enrollments]\nstatus = ""\n',
            r"columns\.enrollments\.status: required, it cannot be absent",
        ),
        (
            '[admin_db.columns.belegung]\nstatus = "S"\n',
            r"columns\.belegung: no such table",
        ),
        (
            '[admin_db.columns.participants]\nfirst_name = "NAME"\n',
            r"columns\.participants: one name for two columns: NAME",
        ),
        ('[admin_db.columns]\ncourses = "KURSE"\n', r"admin_db\.columns\.courses"),
        ('schema = ""\n', r"schema: empty"),
        (
            '[admin_db.tables]\nparticipants = "BELEGUNG"\n',
            r"tables: one name for two tables: BELEGUNG",
        ),
    ],
)
def test_a_bad_mapping_is_a_readable_error_naming_the_field(
    tmp_path: Path, mapping: str, message: str
) -> None:
    """Unknown tables or columns, a required column named absent, or one name twice stop the
    config with a message naming the field."""
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, mapping)


def test_the_environment_can_rename_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`VHS_SYNC_ADMIN_DB__TABLES__COURSES` overrides the file, as any other field."""
    monkeypatch.setenv("VHS_SYNC_ADMIN_DB__TABLES__COURSES", "KURS")
    assert load(tmp_path, "").table_name("courses") == "KURS"


def test_use_rebinds_the_module_tables_and_live_columns_follow() -> None:
    """After `use`, `admin.courses` and the module-level shorthands name the mapped tables."""
    shorthand = admin.columns_of("enrollments")
    try:
        admin.use(SchemaMapping(tables={"enrollments": "BELEG"}))
        assert admin.enrollments.name == "BELEG"
        assert shorthand.status.table is admin.enrollments
        with pytest.raises(AttributeError, match="no column"):
            _ = admin.columns_of("courses").master_school_typo
    finally:
        admin.use(REFERENCE_SCHEMA)
    assert shorthand.status.table.name == "BELEGUNG"
