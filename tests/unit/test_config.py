"""A school's configuration: readable errors, environment overrides (DESIGN: operating it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.config import ConfigError, load_settings

GOOD = """
[school]
id = "vhs-ka"
name = "vhs Karlsruhe"

[admin_db]
url = "sqlite:///admin.db"

[state_db]
url = "sqlite:///state.db"

[[schools]]
id = "vhs-sr"
name = "VHS SR"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "school.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_is_read_with_paths_next_to_it(tmp_path: Path) -> None:
    """Relative SQLite paths are resolved next to the config file; defaults fill the rest."""
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.admin_db.url == f"sqlite:///{tmp_path / 'admin.db'}"
    assert settings.broker.network == "vhskoob"
    assert settings.peer("vhs-sr") is not None


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`VHS_SYNC_BROKER__URL` wins over the file."""
    monkeypatch.setenv("VHS_SYNC_BROKER__URL", "amqp://ka:secret@broker.example/")
    assert load_settings(write(tmp_path, GOOD)).broker.url == "amqp://ka:secret@broker.example/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[school\nid=", "not valid TOML"),
        (GOOD.replace('id = "vhs-ka"', 'id = "VHS KA!"'), "school.id"),
        (GOOD.replace('[state_db]\nurl = "sqlite:///state.db"\n', ""), "state_db"),
        (GOOD + '\n[[schools]]\nid = "vhs-sr"\nname = "again"\n', "more than once"),
        (GOOD + '\n[[schools]]\nid = "vhs-ka"\nname = "me"\n', "is this school"),
        (GOOD + "\n[capture]\npoll_interval = -1\n", "capture.poll_interval"),
    ],
)
def test_a_bad_config_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    """Each problem becomes one readable error naming the field."""
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist is reported as such."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nowhere.toml")
