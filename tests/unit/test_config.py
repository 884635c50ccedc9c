"""A school's configuration: a TOML file, `VHS_SYNC_*` overrides, readable errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapter.config import ConfigError, load_settings

GOOD = """\
[school]
id = "vhs-ka"
name = "vhs Karlsruhe"

[admin_db]
url = "sqlite:///data/vhs-ka-admin.db"

[state_db]
url = "sqlite:///vhs-ka-state.db"

[broker]
url = "amqp://ka:from-file@broker.example:5672/"
network = "vhskoob"

[[schools]]
id = "vhs-sr"
name = "VHS SR"
broker_user = "sr"

[[schools]]
id = "vhs-vs"
name = "vhs Villingen-Schwenningen"
"""


@pytest.fixture(autouse=True)
def no_vhs_sync_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables of the developer's shell or of other tests must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("VHS_SYNC_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "school.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_is_read_with_defaults_for_the_rest(tmp_path: Path) -> None:
    """School, peers and broker come from the file; capture and metrics take their defaults."""
    settings = load_settings(write(tmp_path, GOOD))
    assert (settings.school.id, settings.school.name) == ("vhs-ka", "vhs Karlsruhe")
    assert settings.broker.url == "amqp://ka:from-file@broker.example:5672/"
    assert [peer.id for peer in settings.schools] == ["vhs-sr", "vhs-vs"]
    peer = settings.peer("vhs-sr")
    assert peer is not None
    assert peer.broker_user == "sr"
    assert settings.peer("vhs-hof") is None
    assert settings.capture.poll_interval == 0.2
    assert settings.smtp is None


def test_relative_sqlite_paths_are_next_to_the_config_file(tmp_path: Path) -> None:
    """`sqlite:///x.db` in conf/school.toml means conf/x.db, wherever the adapter was started."""
    settings = load_settings(write(tmp_path, GOOD))
    folder = (tmp_path / "conf").resolve()
    assert settings.admin_db.url == f"sqlite:///{folder / 'data' / 'vhs-ka-admin.db'}"
    assert settings.state_db.url == f"sqlite:///{folder / 'vhs-ka-state.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/vhs-sync/state.db",
        "sqlite:///:memory:",
        "postgresql+psycopg://vhs:pw@db.example/state",
    ],
)
def test_absolute_and_server_urls_stay_as_written(tmp_path: Path, url: str) -> None:
    """Only relative SQLite paths are resolved; absolute paths and server URLs are kept."""
    text = GOOD.replace('"sqlite:///vhs-ka-state.db"', f'"{url}"')
    assert load_settings(write(tmp_path, text)).state_db.url == url


def test_the_environment_overrides_the_broker_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`VHS_SYNC_BROKER__URL` wins over `[broker] url`; the file's other broker fields stay."""
    monkeypatch.setenv("VHS_SYNC_BROKER__URL", "amqp://ka:from-env@broker.example:5672/")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.broker.url == "amqp://ka:from-env@broker.example:5672/"
    assert settings.broker.network == "vhskoob"
    assert settings.school.id == "vhs-ka"


def test_the_environment_can_supply_a_field_the_file_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret such as the state DB URL may live only in the environment."""
    monkeypatch.setenv("VHS_SYNC_STATE_DB__URL", "postgresql+psycopg://vhs:pw@db/state")
    text = GOOD.replace('[state_db]\nurl = "sqlite:///vhs-ka-state.db"\n', "")
    assert (
        load_settings(write(tmp_path, text)).state_db.url == "postgresql+psycopg://vhs:pw@db/state"
    )


def test_a_bad_environment_value_is_a_readable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An override that is not a number where one is needed names the field."""
    monkeypatch.setenv("VHS_SYNC_BROKER__PREFETCH", "many")
    with pytest.raises(ConfigError, match=r"broker\.prefetch"):
        load_settings(write(tmp_path, GOOD))


def test_a_missing_file_is_a_readable_error(tmp_path: Path) -> None:
    """A path that does not exist says so and names the path."""
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist") as raised:
        load_settings(path)
    assert str(path) in str(raised.value)


def test_bad_toml_is_a_readable_error_with_the_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and where in it the error is."""
    path = write(tmp_path, GOOD.replace("[admin_db]", "[admin_db"))
    with pytest.raises(ConfigError, match="is not valid TOML") as raised:
        load_settings(path)
    assert str(path) in str(raised.value)
    assert "line 5" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (GOOD.replace('id = "vhs-ka"\n', ""), "school.id", "Field required"),
        (GOOD.replace('name = "vhs Karlsruhe"\n', ""), "school.name", "Field required"),
        (GOOD.replace('[admin_db]\nurl = "sqlite:///data/vhs-ka-admin.db"\n', ""), "admin_db", ""),
        (GOOD.replace('id = "vhs-ka"', 'id = "VHS KA"'), "school.id", "pattern"),
        (GOOD + "\n[capture]\npoll_interval = 0\n", "capture.poll_interval", "greater than 0"),
        (GOOD + '\n[brokr]\nurl = "amqp://x"\n', "brokr", "Extra inputs"),
    ],
)
def test_a_missing_or_wrong_field_is_a_readable_error(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    """Every unusable field is named, with what is wrong with it, and no traceback noise."""
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    message = str(raised.value)
    assert message.startswith(f"config file {tmp_path / 'conf' / 'school.toml'} is not usable:")
    assert f"  {field}" in message
    assert problem in message


def test_a_peer_listed_twice_is_a_readable_error(tmp_path: Path) -> None:
    """The same school twice in `[[schools]]` is refused, naming it."""
    text = GOOD + '\n[[schools]]\nid = "vhs-sr"\nname = "VHS SR again"\n'
    with pytest.raises(ConfigError, match="listed more than once: vhs-sr"):
        load_settings(write(tmp_path, text))


def test_a_state_db_that_is_the_admin_db_is_a_readable_error(tmp_path: Path) -> None:
    """The state DB must be a database of its own: the admin DB's URL is refused, naming the
    field, also when a relative path and an absolute one name the same file."""
    same_url = GOOD.replace("sqlite:///vhs-ka-state.db", "sqlite:///data/vhs-ka-admin.db")
    with pytest.raises(ConfigError, match="state_db"):
        load_settings(write(tmp_path, same_url))
    absolute = tmp_path / "conf" / "data" / "vhs-ka-admin.db"
    same_file = GOOD.replace("sqlite:///data/vhs-ka-admin.db", f"sqlite:///{absolute}").replace(
        "sqlite:///vhs-ka-state.db", "sqlite:///data/vhs-ka-admin.db"
    )
    with pytest.raises(ConfigError, match="state_db"):
        load_settings(write(tmp_path, same_file))


def test_this_school_listed_as_its_own_peer_is_a_readable_error(tmp_path: Path) -> None:
    """A school is not its own peer."""
    text = GOOD + '\n[[schools]]\nid = "vhs-ka"\nname = "me"\n'
    with pytest.raises(ConfigError, match="'vhs-ka' is this school, not a peer"):
        load_settings(write(tmp_path, text))


def test_the_example_config_of_the_repository_loads() -> None:
    """examples/school.toml, which the README points to, is a valid configuration with a
    broker user per school."""
    path = Path(__file__).resolve().parents[2] / "examples" / "school.toml"
    settings = load_settings(path)
    settings.check_broker_users()
    assert settings.school.id == "vhs-ka"
    assert settings.state_db.url == f"sqlite:///{path.parent.resolve() / 'vhs-ka-state.db'}"


def test_a_peer_without_broker_user_stops_the_daemon_unless_insecure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vhs-vs has no broker user: the check refuses with a line naming it and the way out;
    `[broker] insecure` (here from the environment) lets it run."""
    settings = load_settings(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="schools without broker_user: vhs-vs") as refused:
        settings.check_broker_users()
    assert "insecure" in str(refused.value)
    assert "\n" not in str(refused.value)
    monkeypatch.setenv("VHS_SYNC_BROKER__INSECURE", "true")
    load_settings(write(tmp_path, GOOD)).check_broker_users()


@pytest.mark.parametrize(
    ("url", "vs_user", "problem"),
    [
        ("amqp://guest:guest@broker.example/", "vs", "as guest"),
        ("amqp://broker.example/", "vs", "as guest"),  # no user is guest
        ("amqp://ka:pw@broker.example/", "sr", "shared by two schools: sr"),
        ("amqp://sr:pw@broker.example/", "vs", "shared by two schools: sr"),
        ("amqp://ka:pw@broker.example/", "vs", None),
    ],
)
def test_each_school_needs_a_broker_user_of_its_own(
    tmp_path: Path, url: str, vs_user: str, problem: str | None
) -> None:
    """Guest, or one user for two schools, cannot tell schools apart; distinct users can."""
    text = GOOD.replace("amqp://ka:from-file@broker.example:5672/", url).replace(
        'name = "vhs Villingen-Schwenningen"\n',
        f'name = "vhs Villingen-Schwenningen"\nbroker_user = "{vs_user}"\n',
    )
    settings = load_settings(write(tmp_path, text))
    assert (
        settings.broker_user_problem() is None
        if problem is None
        else problem in str(settings.broker_user_problem())
    )


def test_the_admin_db_time_zone_is_an_iana_name(tmp_path: Path) -> None:
    """`[admin_db] timezone` names the zone of BEARBDATUM; unset means this machine's."""
    assert load_settings(write(tmp_path, GOOD)).admin_db.zone is None
    text = GOOD.replace(
        'url = "sqlite:///data/vhs-ka-admin.db"',
        'url = "sqlite:///data/vhs-ka-admin.db"\ntimezone = "Europe/Berlin"',
    )
    assert str(load_settings(write(tmp_path, text)).admin_db.zone) == "Europe/Berlin"
    with pytest.raises(ConfigError, match=r"admin_db.timezone: .*unknown time zone 'CEST'"):
        load_settings(write(tmp_path, text.replace("Europe/Berlin", "CEST")))


def test_the_state_db_is_not_on_sql_server(tmp_path: Path) -> None:
    """SQL Server may hold the admin DB, not the state DB: refused in one readable line."""
    text = GOOD.replace("sqlite:///vhs-ka-state.db", "mssql://sync@kufer/state")
    with pytest.raises(ConfigError, match="SQL Server is supported for the admin DB only"):
        load_settings(write(tmp_path, text))
    mssql_admin = GOOD.replace("sqlite:///data/vhs-ka-admin.db", "mssql://sync@kufer/kufer")
    assert load_settings(write(tmp_path, mssql_admin)).admin_db.url.startswith("mssql://")
