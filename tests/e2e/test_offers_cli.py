"""`vhs-sync offers`, `subscribe` and `unsubscribe` as staff run them: real processes on a
SQLite school whose adapter has heard one offer; no broker is needed (nor reachable)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from adapter.domain import CourseRef
from adapter.domain.offers import CourseOffer
from adapter.messages import course_offered
from adapter.ops import offers
from adapter.store import admin
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state

VHS_SYNC = [sys.executable, "-m", "adapter"]
COURSE = CourseRef("vhs-sr", "26-64901B")
OFFER = CourseOffer(
    COURSE,
    "Online-Kurs: Entwickeln von Android Apps - Grundlagen",
    Decimal("53.00"),
    starts_on=date(2026, 9, 28),
    ends_on=date(2026, 11, 16),
    time_from=time(18, 0),
    time_to=time(19, 30),
    sessions=4,
    place="VHS SR, virtueller Kursraum",
    lecturer="vhs Villingen-Schwenningen",
    max_participants=8,
    min_participants=5,
    registration_deadline=date(2026, 9, 22),
)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VHS_SYNC, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """vhs-ka on SQLite, whose adapter heard VHS SR's offer; its broker is not reachable."""
    path = tmp_path / "vhs-ka.toml"
    path.write_text(
        """
[school]
id = "vhs-ka"
name = "vhs Karlsruhe"

[admin_db]
url = "sqlite:///vhs-ka-admin.db"

[state_db]
url = "sqlite:///vhs-ka-state.db"

[broker]
url = "amqp://guest:guest@127.0.0.1:1/"
insecure = true

[[schools]]
id = "vhs-sr"
name = "VHS SR"
""",
        encoding="utf-8",
    )
    admin_engine = make_engine(f"sqlite:///{tmp_path / 'vhs-ka-admin.db'}")
    state_engine = make_engine(f"sqlite:///{tmp_path / 'vhs-ka-state.db'}")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    now = datetime.now(UTC)
    event = course_offered(OFFER, version=1, event_id="e1", time=now)
    offers.receive_offer(admin_engine, state_engine, "vhs-ka", event, now)
    admin_engine.dispose()
    state_engine.dispose()
    return path


def courses(config: Path) -> list[dict[str, object]]:
    engine = make_engine(f"sqlite:///{config.parent / 'vhs-ka-admin.db'}")
    with engine.connect() as connection:
        rows = [r._asdict() for r in connection.execute(select(*keyed(*admin.courses.c)))]
    engine.dispose()
    return rows


def test_offers_lists_what_the_seeds_header_shows(config: Path) -> None:
    """`offers --json` gives deadline, weekday, times, duration, place, lecturer; the table
    names the master school by its name."""
    listed = cli("offers", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    [offer] = json.loads(listed.stdout)
    assert offer["registration_deadline"] == "2026-09-22"
    assert (offer["weekday"], offer["time_from"], offer["time_to"]) == ("Mo", "18:00", "19:30")
    assert (offer["duration"], offer["place"]) == ("4 Abende", "VHS SR, virtueller Kursraum")
    assert (offer["lecturer"], offer["local_course"], offer["cancelled"]) == (
        "vhs Villingen-Schwenningen",
        None,
        False,
    )
    table = cli("offers", "--config", config)
    assert table.returncode == 0, table.stderr
    assert "VHS SR" in table.stdout
    assert "Mo, 28.09.2026" in table.stdout


def test_subscribe_prints_or_creates_and_unsubscribe_leaves(config: Path) -> None:
    """`--print` writes nothing and shows the KURSE fields; without it the course is made;
    errors are one line with exit 1; unsubscribe leaves the course as a local one."""
    printed = cli("subscribe", "vhs-sr", COURSE.number, "--as", "26-A", "--print", "-c", config)
    assert printed.returncode == 0, printed.stderr
    assert "MASTER_KNR" in printed.stdout
    assert "ZEIT_VON" in printed.stdout
    assert courses(config) == []
    unknown = cli("subscribe", "vhs-sr", "nope", "--as", "26-A", "-c", config)
    assert unknown.returncode == 1
    assert "no offer of course nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    made = cli("subscribe", "vhs-sr", COURSE.number, "--as", "26-A", "-c", config)
    assert made.returncode == 0, made.stderr
    [row] = courses(config)
    assert (row["number"], row["master_school"], row["master_number"]) == (
        "26-A",
        "vhs-sr",
        COURSE.number,
    )
    assert (row["title"], row["max_participants"], row["place"]) == (OFFER.title, 8, OFFER.place)
    left = cli("unsubscribe", "26-A", "-c", config)
    assert left.returncode == 0, left.stderr
    assert "left course" in left.stdout
    assert "Traceback" not in left.stdout + left.stderr
    [row] = courses(config)
    assert row["master_school"] is None


def test_what_cannot_be_subscribed_or_left_is_refused_with_the_reason(config: Path) -> None:
    """A second subscription, a taken number, a course of one's own, leaving a course that is
    not shared, a withdrawn offer: each an `OfferError` (exit 1 at the command) that says
    what is wrong."""
    admin_engine = make_engine(f"sqlite:///{config.parent / 'vhs-ka-admin.db'}")
    state_engine = make_engine(f"sqlite:///{config.parent / 'vhs-ka-state.db'}")
    stamp = datetime.now().replace(microsecond=0)
    offers.subscribe(admin_engine, state_engine, "vhs-ka", COURSE, "26-A", stamp)
    with pytest.raises(offers.OfferError, match="already, as 26-A"):
        offers.subscription(admin_engine, state_engine, "vhs-ka", COURSE, "26-B")
    with pytest.raises(offers.OfferError, match="is this school's own"):
        offers.subscription(admin_engine, state_engine, "vhs-sr", COURSE, "26-B")
    offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "26-A", datetime.now(UTC), stamp)
    with pytest.raises(offers.OfferError, match="taken"):
        offers.subscription(admin_engine, state_engine, "vhs-ka", COURSE, "26-A")
    with pytest.raises(offers.OfferError, match="is not a shared course"):
        offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "26-A", datetime.now(UTC), stamp)
    now = datetime.now(UTC)
    withdrawn = course_offered(replace(OFFER, withdrawn=True), version=2, event_id="e", time=now)
    assert offers.receive_offer(admin_engine, state_engine, "vhs-ka", withdrawn, now)
    with pytest.raises(offers.OfferError, match="offers course 26-64901B no more"):
        offers.subscription(admin_engine, state_engine, "vhs-ka", COURSE, "26-C")
    admin_engine.dispose()
    state_engine.dispose()
