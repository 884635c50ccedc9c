"""Settlement at course end (V12): the master bills each subscriber school through the open
balance of its company bookings, once per school, and sync never writes that balance again."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from adapter.cli import app
from adapter.desk import Person, set_status, update_person
from adapter.domain import Status
from adapter.ops.sandbox import SandboxSchool
from adapter.store import admin
from tests.cluster import Cluster

pytestmark = pytest.mark.rabbitmq

ANNA = Person("Berger", "Anna", main_email="anna@example.org")
JAN = Person("Nowak", "Jan", main_email="jan@example.org")
LEA = Person("Fischer", "Lea")
EVA = Person("Hofmann", "Eva")
TOM = Person("Wagner", "Tom")


def config_of(school: SandboxSchool, folder: Path) -> Path:
    """The school's TOML, as its operator would have it (the command needs no broker)."""
    settings = school.settings
    peers = "".join(
        f'\n[[schools]]\nid = "{peer.id}"\nname = "{peer.name}"\n' for peer in settings.schools
    )
    path = folder / f"{school.id}.toml"
    path.write_text(
        f'[school]\nid = "{school.id}"\nname = "{school.name}"\n'
        f'[admin_db]\nurl = "{settings.admin_db.url}"\n'
        f'[state_db]\nurl = "{settings.state_db.url}"\n'
        f"[broker]\ninsecure = true\n{peers}",
        encoding="utf-8",
    )
    return path


def settle(config: Path, course: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["settlement", course, "--config", str(config), *args])
    return result.exit_code, result.output


def balances(school: SandboxSchool) -> dict[str, Decimal]:
    """The balance of each row at this school, by the name of its participant."""
    return {row.name.split(" (")[0]: row.balance for row in school.listing().rows}


async def test_the_master_bills_each_school_once_and_sync_keeps_the_balance(
    cluster: Cluster, tmp_path: Path
) -> None:
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    master.enroll(ANNA)
    jan, _ = karlsruhe.enroll(JAN)
    _, lea = karlsruhe.enroll(LEA)
    hof.enroll(EVA)
    with karlsruhe.admin.begin() as connection:
        set_status(connection, lea, Status.CANCELLED)
    await cluster.wait_until(lambda: master.occupancy() == (3, 0), what="master TN 3")
    config = config_of(master, tmp_path)
    before = balances(master)
    assert before["Berger, Anna"] == Decimal("53.00")  # the master's own booking

    code, shown = settle(config, master.course, "--json")
    assert code == 0, shown
    listed = {entry["school"]: entry for entry in json.loads(shown)["schools"]}
    assert set(listed) == {"vhs-ka", "vhs-hof"}
    # Only regular places count: Lea cancelled, and the master's own Anna is no company booking.
    assert [b["name"] for b in listed["vhs-ka"]["bookings"]] == ["Nowak, Jan"]
    assert listed["vhs-ka"]["bookings"][0]["participant_number"] == jan
    assert (listed["vhs-hof"]["participants"], listed["vhs-hof"]["amount"]) == (1, None)

    code, shown = settle(
        config, master.course, "--rate", "vhs-ka=18,00", "--rate", "vhs-hof=15.50",
        "--set", "--school", "vhs-ka",
    )  # fmt: skip
    assert code == 0, shown
    assert "vhs Karlsruhe (vhs-ka): 1 participant(s) (A), rate 18,00, amount 18,00, set" in shown
    assert "vhs Hofer Land (vhs-hof): 1 participant(s) (A), rate 15,50, amount 15,50, not set" in (
        shown
    )
    assert balances(master) == {**before, "Nowak, Jan": Decimal("18.00")}

    code, shown = settle(config, master.course, "--set", "--school", "vhs-ka")
    assert code == 1
    assert "already settled, once per school: vhs-ka" in shown
    code, shown = settle(config, master.course, "--rate", "vhs-ka=20")
    assert code == 1
    assert "already settled, the rate stays: vhs-ka" in shown

    # The subscriber renames Jan and books Tom: sync changes the rows, never the balance.
    with karlsruhe.admin.begin() as connection:
        update_person(connection, jan, last_name="Nowak-Berg")
    hof.enroll(TOM)
    await cluster.wait_until(
        lambda: {"Nowak-Berg, Jan", "Wagner, Tom"} <= set(balances(master)), what="the changes"
    )
    assert balances(master)["Nowak-Berg, Jan"] == Decimal("18.00")

    code, shown = settle(config, master.course, "--set")  # every school with a rate, not set
    assert code == 0, shown
    assert "set: vhs Hofer Land (vhs-hof), 2 booking(s) of 15,50" in shown
    assert "total 49,00" in shown
    got = balances(master)
    assert (got["Hofmann, Eva"], got["Wagner, Tom"]) == (Decimal("15.50"), Decimal("15.50"))
    assert (got["Berger, Anna"], got["Fischer, Lea"]) == (Decimal("53.00"), Decimal("0"))


async def test_only_the_master_settles_and_only_at_course_end(
    cluster: Cluster, tmp_path: Path
) -> None:
    master, karlsruhe, _ = cluster.three_schools()
    code, shown = settle(config_of(karlsruhe, tmp_path), karlsruhe.course)
    assert code == 1
    assert "only its master settles it" in shown

    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == master.course)
            .values(ends_on=date(2999, 1, 1))
        )
    code, shown = settle(config_of(master, tmp_path), master.course, "--rate", "vhs-ka=1", "--set")
    assert code == 1
    assert "ends on 01.01.2999: settle it at course end" in shown
    code, shown = settle(config_of(master, tmp_path), master.course, "--rate", "vhs-ka=1,234")
    assert code == 2
    assert "more than two decimals" in shown
