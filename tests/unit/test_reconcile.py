"""Drift between what a school holds of an origin and what the origin has, without I/O."""

from __future__ import annotations

from adapter.mapping.reconcile import CourseReport, LocalIssue, compare, digest


def test_the_digest_depends_on_the_entries_not_their_order() -> None:
    one = {1: (10, "A"), 2: (11, "S")}
    assert digest(one) == digest(dict(reversed(list(one.items()))))
    assert digest(one) != digest({1: (10, "A"), 2: (12, "S")})
    assert digest(one) != digest({1: (10, "A")})


def test_missing_stale_extra_and_ahead_are_told_apart() -> None:
    held = {1: (10, "A"), 2: (5, "A"), 3: (7, "W"), 4: (9, "A"), 6: (3, "S")}
    told = {1: (10, "A"), 2: (8, "A"), 4: (8, "A"), 5: (4, "A"), 7: (2, "S")}
    drift = compare("vhs-ka", held, told)
    assert (drift.missing, drift.stale, drift.extra, drift.ahead) == ((5,), (2,), (3,), (4,))
    # A cancellation never held here (7) or held but gone at the origin (6) changes nothing.
    assert drift.drifted
    assert drift.repairable


def test_the_same_entries_are_no_drift() -> None:
    entries = {1: (10, "A"), 2: (11, "S")}
    drift = compare("vhs-ka", entries, dict(entries))
    assert not drift.drifted
    assert not CourseReport("vhs-sr", "26-1", "26-1", origins=(drift,)).drifted


def test_a_report_counts_each_kind() -> None:
    report = CourseReport(
        "vhs-sr",
        "26-1",
        "26-1",
        origins=(compare("vhs-ka", {}, {1: (1, "A"), 2: (1, "W")}),),
        local=(LocalIssue("foreign_edited", "26-1", 4, "status S here"),),
    )
    counts = report.counts()
    assert (counts["missing"], counts["foreign_edited"], counts["stale"]) == (2, 1, 0)
    assert report.drifted
