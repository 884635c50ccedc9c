"""`vhs-sync settlement` against SQLite admin and state DBs, without a broker: what it writes
into the admin DB and what it tells an operator who got something wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from sqlalchemy import insert, select
from typer.testing import CliRunner

from adapter.cli import app
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state

COURSE = "26-S1"
# A zone far from any machine's: its wall time is 14 hours ahead of UTC.
FAR_ZONE = "Pacific/Kiritimati"


def school_config(
    folder: Path, *, timezone: str | None = None, admin_url: str = "", state_url: str = ""
) -> Path:
    """The master vhs-a of COURSE, with one company booking of vhs-b (participant 7 there)."""
    admin_url = admin_url or f"sqlite:///{folder / 'admin.db'}"
    state_url = state_url or f"sqlite:///{folder / 'state.db'}"
    zone = f'timezone = "{timezone}"\n' if timezone else ""
    path = folder / "vhs-a.toml"
    path.write_text(
        f'[school]\nid = "vhs-a"\nname = "vhs A"\n'
        f'[admin_db]\nurl = "{admin_url}"\n{zone}'
        f'[state_db]\nurl = "{state_url}"\n'
        '[broker]\ninsecure = true\n[[schools]]\nid = "vhs-b"\nname = "vhs B"\n',
        encoding="utf-8",
    )
    return path


def seed(folder: Path) -> int:
    admin_engine = make_engine(f"sqlite:///{folder / 'admin.db'}")
    state_engine = make_engine(f"sqlite:///{folder / 'state.db'}")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    with admin_engine.begin() as connection:
        connection.execute(
            insert(admin.courses).values(
                number=COURSE,
                title="Shared",
                ends_on=date(2020, 1, 1),
                master_school="vhs-a",
                master_number=COURSE,
            )
        )
        company = connection.execute(
            insert(admin.participants).values(last_name="vhs B")
        ).inserted_primary_key[0]
        person = connection.execute(
            insert(admin.participants).values(last_name="Nowak", first_name="Jan")
        ).inserted_primary_key[0]
        enrollment_id = connection.execute(
            insert(admin.enrollments).values(
                course_number=COURSE,
                participant_number=person,
                company_number=company,
                status="A",
                balance=Decimal(0),
                modified_at=datetime(2020, 1, 1),
            )
        ).inserted_primary_key[0]
    with state_engine.begin() as connection:
        connection.execute(
            insert(state.applied).values(
                origin_school="vhs-b",
                course_master="vhs-a",
                course_number=COURSE,
                participant_number=7,
                version=1,
                status="A",
                enrollment_id=enrollment_id,
            )
        )
    admin_engine.dispose()
    state_engine.dispose()
    return int(enrollment_id)


def test_setting_balances_stamps_bearbdatum_in_the_admin_dbs_zone(tmp_path: Path) -> None:
    """BEARBDATUM of a settled booking is wall time in `[admin_db] timezone`, as the admin
    product's own stamps are, not this machine's."""
    enrollment_id = seed(tmp_path)
    config = school_config(tmp_path, timezone=FAR_ZONE)
    before = datetime.now(UTC).astimezone(ZoneInfo(FAR_ZONE)).replace(tzinfo=None)
    result = CliRunner().invoke(
        app, ["settlement", COURSE, "--config", str(config), "--rate", "vhs-b=18", "--set"]
    )
    assert result.exit_code == 0, result.output
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    with engine.connect() as connection:
        balance, stamp = connection.execute(
            select(admin.enrollments.c.balance, admin.enrollments.c.modified_at).where(
                admin.enrollments.c.id == enrollment_id
            )
        ).one()
    assert balance == Decimal("18.00")
    assert before - timedelta(seconds=1) <= stamp <= before + timedelta(minutes=1)


@pytest.mark.parametrize("command", [["settlement", COURSE], ["reconcile"]])
def test_an_admin_db_url_it_cannot_use_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """A wrong admin DB URL in the config is a readable line and exit 2, not a traceback."""
    config = school_config(tmp_path, admin_url="nosuchdb://somewhere/admin")
    result = CliRunner().invoke(app, [*command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == ["error: unknown database driver 'nosuchdb'"], (
        result.output
    )


# Nothing listens on port 1 of this machine.
UNREACHABLE = "postgresql://postgres:secret@127.0.0.1:1/vhs"


@pytest.mark.parametrize("command", [["settlement", COURSE], ["reconcile"]])
@pytest.mark.parametrize("which", ["admin_url", "state_url"])
def test_a_database_that_is_down_is_one_line(
    tmp_path: Path, command: list[str], which: str
) -> None:
    """An admin or state DB that cannot be reached: one readable line and exit 1."""
    seed(tmp_path)
    config = school_config(tmp_path, **{which: UNREACHABLE})
    result = CliRunner().invoke(app, [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: cannot reach the "), line
    assert "Connection refused" in line  # what the driver says
    assert "secret" not in line


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in this process points structlog at its own stderr, which the runner
    closes afterwards: later tests must log as before."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
