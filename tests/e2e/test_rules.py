"""Ownership, deletes, restarts and late joiners: the rules that keep sync honest."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from adapter.desk import Person, delete_enrollment, set_status
from adapter.domain import Status
from tests.cluster import Cluster

pytestmark = pytest.mark.rabbitmq

JAN = Person("Nowak", "Jan", main_email="jan@example.org")
MIA = Person("Keller", "Mia")


async def test_master_edit_of_a_foreign_row_never_travels_back(scanning_cluster: Cluster) -> None:
    """The master cancelling a subscriber's enrollment is reported by the full scan and not
    synced (V6, V11)."""
    cluster = scanning_cluster
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((1, 0)))
    [row] = master.enrollment_rows()
    with capture_logs() as logs:
        with master.admin.begin() as connection:
            set_status(connection, row["id"], Status.CANCELLED)
        await cluster.wait_until(
            lambda: any(e["event"] == "foreign_enrollment.edited_locally" for e in logs),
            what="the report of the local edit",
        )
        await cluster.quiet(1.0)
    assert karlsruhe.occupancy() == (1, 0)
    assert hof.occupancy() == (1, 0)
    [report] = [e for e in logs if e["event"] == "foreign_enrollment.edited_locally"]
    assert (report["enrollment_id"], report["status"], report["synced_status"]) == (
        row["id"],
        "S",
        "A",
    )
    assert not [e for e in logs if e["event"] == "enrollment.captured" and e["school"] == "vhs-sr"]


async def test_a_hard_delete_is_published_as_a_cancellation(scanning_cluster: Cluster) -> None:
    """A deleted enrollment ("Entfernung") becomes status S elsewhere, with a warning naming
    the row (V4)."""
    cluster = scanning_cluster
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    _, jan = karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((1, 0)))
    with capture_logs() as logs:
        with karlsruhe.admin.begin() as connection:
            delete_enrollment(connection, jan)
        await cluster.wait_until(lambda: cluster.agree((0, 0)))
    assert [row["status"] for row in master.enrollment_rows()] == ["S"]
    [warning] = [e for e in logs if e["event"] == "enrollment.hard_deleted"]
    assert (warning["school"], warning["enrollment_id"], warning["log_level"]) == (
        "vhs-ka",
        jan,
        "warning",
    )
    assert "Nowak" not in str(warning)


async def test_changes_made_while_stopped_are_published_at_the_next_start(cluster: Cluster) -> None:
    """What changed while the adapter was down is found when it starts again."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    _, jan = karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((1, 0)))
    await cluster.stop(karlsruhe)
    with karlsruhe.admin.begin() as connection:
        set_status(connection, jan, Status.CANCELLED)
    karlsruhe.enroll(MIA, Status.WAITLISTED)
    await cluster.quiet(0.5)
    assert master.occupancy() == (1, 0)
    await cluster.start(karlsruhe)
    await cluster.wait_until(lambda: cluster.agree((0, 1)))


async def test_a_late_subscriber_receives_existing_enrollments(cluster: Cluster) -> None:
    """A school that subscribes later sees the enrollments already made elsewhere (V1)."""
    names = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]
    peers = {i: [p for p in names if p[0] != i] for i, _ in names}
    master = cluster.add_school("vhs-sr", "VHS SR", master="vhs-sr", peers=peers["vhs-sr"])
    karlsruhe = cluster.add_school(
        "vhs-ka", "vhs Karlsruhe", master="vhs-sr", peers=peers["vhs-ka"]
    )
    await cluster.start_all()
    master.enroll(MIA)
    karlsruhe.enroll(JAN, Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((1, 1)))

    hof = cluster.add_school("vhs-hof", "vhs Hofer Land", master="vhs-sr", peers=peers["vhs-hof"])
    await cluster.start(hof)
    await cluster.wait_until(
        lambda: hof.occupancy() == (1, 1), what="the late subscriber's listing"
    )
    assert sorted(row.name for row in hof.listing().rows) == ["VHS SR", "vhs Karlsruhe"]
