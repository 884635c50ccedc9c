"""Finding the school's own enrollment changes (DESIGN decision 3) and writing the outbox.

Polling reads rows whose modification stamp (`BEARBDATUM`) is new; a periodic full scan
compares every own enrollment with the last published state, which finds hard deletes and
anything a stamp missed. Either way the state of an enrollment key is judged from all the
key's rows (`current_row`: a person may have cancelled and registered again), it is published
only when what the network would see of it changed, and never from a row that arrived by
sync (V11).

Memory is bounded by a page (`PAGE_ROWS`), not by a burst: both read a page of rows at a
time by row id and write its outbox rows and shadow in a transaction of their own. A poll
passes over a row exactly as the previous poll read it (its overlap window reads it again)
by a digest, and builds events only for keys whose state differs from the published one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Label,
    Row,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql import Select
from sqlalchemy.types import NullType

from adapter.capture.outbox import enqueue_course_settings, enqueue_states, enqueue_sync_request
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, Status, next_version
from adapter.mapping.courses import (
    InvalidCourseSettingsError,
    course_settings,
    settings_fingerprint,
)
from adapter.mapping.inbound import REMARK_PREFIX, arrived_by_sync
from adapter.mapping.outbound import (
    LocalEnrollment,
    UnsyncableRowError,
    cancellation_of_deleted,
    current_per_key,
    fingerprint,
    outbound_state,
)
from adapter.store import admin, kept, state
from adapter.store.db import one_of, upsert
from adapter.store.localtime import poll_since

log = structlog.get_logger("adapter.capture")

# Enrollment rows one page of a poll or scan reads: what capture holds at a time (with the
# other rows of their keys, and their outbox rows, which one transaction writes).
PAGE_ROWS = 1000
_KEYS_PER_QUERY = 2000  # bound parameters of one admin-DB query, below SQL Server's 2,100


def _microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(slots=True)
class CaptureResult:
    """What one poll or scan found."""

    published: int = 0
    deleted: int = 0
    foreign_edits: int = 0
    outbox_rows: int = 0
    new_courses: list[CourseRef] = field(default_factory=list)

    def add(self, other: CaptureResult) -> None:
        """Count what a further page found."""
        self.published += other.published
        self.deleted += other.deleted
        self.foreign_edits += other.foreign_edits
        self.outbox_rows += other.outbox_rows
        self.new_courses.extend(other.new_courses)


_enrollment = admin.columns_of("enrollments")
_course = admin.columns_of("courses")
_participant = admin.columns_of("participants")


def _own_rows_query(shared: Mapping[str, CourseRef] | None) -> Select[Any]:
    """Enrollment rows of shared courses with their participants (`shared`: by local number,
    as `kept.shared_courses` read them; None: the caller narrows to shared courses itself)."""
    query = (
        select(
            _enrollment.id,
            admin.column_or_null("courses", "master_school"),
            _course.master_number,
            _course.number,
            _enrollment.participant_number,
            _enrollment.status,
            _enrollment.registered_on,
            admin.column_or_null("enrollments", "waitlisted_since"),
            admin.column_or_null("enrollments", "waitlisted_by_admin"),
            _participant.last_name,
            _participant.first_name,
            _participant.main_email,
            _participant.main_phone,
            _enrollment.modified_at,
            _enrollment.remark,
            _participant.modified_at.label("participant_modified_at"),
        )
        .join_from(admin.enrollments, admin.courses, _enrollment.course_number == _course.number)
        .join(admin.participants, _enrollment.participant_number == _participant.number)
    )
    return query if shared is None else query.where(kept.is_shared(shared))


def _window_query(since: datetime, shared: Mapping[str, CourseRef]) -> Select[Any]:
    """Own rows of shared courses stamped since `since` (the row or its participant): the
    id and key, then every other field `_own_rows_query` reads, as the driver hands it over,
    unconverted (SQLite's dates are text), since the poll only compares them."""
    enrollment, course, participant = admin.enrollments.c, admin.courses.c, admin.participants.c
    query = _own_rows_query(shared)
    key = (enrollment.id, course.number, enrollment.participant_number)
    raw = NullType()
    compared = [
        type_coerce(column.element if isinstance(column, Label) else column, raw)
        for column in query.selected_columns
        if not any(column is part for part in key)
    ]
    return query.with_only_columns(*key, *compared, maintain_column_froms=True).where(
        or_(enrollment.modified_at >= since, participant.modified_at >= since),
        # Rows sync wrote are never published; the full scan still reads them, to report a
        # local edit of one.
        _not_synced(),
    )


def _scan_query(shared: Mapping[str, CourseRef]) -> Select[Any]:
    """Every row of shared courses, own and foreign (to report a local edit of a foreign one):
    ids, keys, status and remark only."""
    enrollment, course, participant = admin.enrollments.c, admin.courses.c, admin.participants.c
    return (
        select(
            enrollment.id,
            course.number,
            course.master_number,
            enrollment.participant_number,
            enrollment.status,
            enrollment.remark,
        )
        .join_from(admin.enrollments, admin.courses, enrollment.course_number == course.number)
        .join(admin.participants, enrollment.participant_number == participant.number)
        .where(kept.is_shared(shared))
    )


def _course_number(row: Row[Any], shared: Mapping[str, CourseRef]) -> str:
    """The network's number of a row's course (the master's)."""
    ref = shared.get(row.number)
    return ref.number if ref is not None else row.master_number or row.number


def _not_synced() -> ColumnElement[bool]:
    """Not a row sync wrote (those carry its remark)."""
    return or_(_enrollment.remark.is_(None), _enrollment.remark.not_like(f"{REMARK_PREFIX}%"))


def _rows_of_keys(connection: Connection, keys: set[tuple[str, int]]) -> list[Row[Any]]:
    """Every row of these (local course, participant) keys: the state of a key is judged from
    all its rows (`current_row`), so a poll that sees one row of a key change reads the
    others too. One query for all keys (the course index narrows it, the exact pairs are
    picked here), not one a row."""
    if not keys:
        return []
    courses = sorted({course for course, _ in keys})
    rows: list[Row[Any]] = []
    # Course and participant numbers together stay within `_KEYS_PER_QUERY`.
    for first in range(0, len(courses), _KEYS_PER_QUERY // 2):
        some_courses = courses[first : first + _KEYS_PER_QUERY // 2]
        wanted = set(some_courses)
        participants = sorted({number for course, number in keys if course in wanted})
        step = _KEYS_PER_QUERY - len(some_courses)
        for start in range(0, len(participants), step):
            query = _own_rows_query(None).where(
                _enrollment.course_number.in_(some_courses),
                _enrollment.participant_number.in_(participants[start : start + step]),
                _not_synced(),
            )
            rows.extend(row for row in connection.execute(query) if _local_key(row) in keys)
    return rows


def _local_key(row: Row[Any]) -> tuple[str, int]:
    return (row.number, row.participant_number)


def _local_enrollment(
    row: Row[Any], shared: Mapping[str, CourseRef], marks: Mapping[str, Any]
) -> LocalEnrollment:
    stamps = [stamp for stamp in (row.modified_at, row.participant_modified_at) if stamp]
    return LocalEnrollment(
        enrollment_id=row.id,
        course=CourseRef(row.master_school, row.master_number or row.number)
        if row.master_school
        else shared[row.number],
        participant_number=row.participant_number,
        status=row.status or "",
        registered_on=row.registered_on,
        last_name=row.last_name or "",
        first_name=row.first_name or "",
        main_email=row.main_email,
        main_phone=row.main_phone,
        modified_at=max(stamps) if stamps else None,
        arrived_by_sync=arrived_by_sync(row.remark),
        waitlisted_since=marks["waitlisted_since"],
        waitlisted_by_admin=bool(marks["waitlisted_by_admin"]),
    )


def _own(rows: list[LocalEnrollment], foreign: dict[int, str]) -> list[LocalEnrollment]:
    """The school's own enrollments, one row per key (`current_row`): never a row that
    arrived by sync (V11)."""
    return current_per_key(
        row for row in rows if row.enrollment_id not in foreign and not row.arrived_by_sync
    )


def _key_tuple(key: EnrollmentKey) -> tuple[str, str, int]:
    return (key.course.master_school, key.course.number, key.participant_number)


class Capture:
    """Capture for one school: reads its admin DB, writes its state DB's outbox.

    Memory is bounded by the page, not by the burst: a poll or scan reads at most
    `page_rows` enrollment rows at a time (keyset pagination on the row id) and writes each
    page's outbox rows and published shadow in a transaction of their own; the watermark
    moves once every page is committed."""

    def __init__(
        self,
        admin_engine: Engine,
        state_engine: Engine,
        school: str,
        *,
        overlap: timedelta = timedelta(seconds=2),
        sync_lock: threading.Lock | None = None,
        admin_clock: Callable[[], datetime] = datetime.now,
        timezone: ZoneInfo | None = None,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        self.admin_engine = admin_engine
        self.state_engine = state_engine
        self.school = school
        self.overlap = overlap
        self.page_rows = page_rows
        self._reported_edits: set[tuple[int, str]] = set()
        # The rows the last poll read, by id, as a digest of what was read: the next poll
        # passes over those unchanged (they lie in its overlap window) without judging them.
        self._seen: dict[int, int] = {}
        # Held by apply from its admin-DB commit to its state-DB commit: rows it has just
        # written are never read here before they are known to be foreign.
        self.sync_lock = sync_lock or threading.Lock()
        self.admin_clock = admin_clock
        # The zone of the admin DB's wall-clock stamps (None: this machine's).
        self.timezone = timezone

    # -- reading -------------------------------------------------------------------------

    def _page(self, query: Select[Any], after: int | None) -> list[Row[Any]]:
        """The next page of a query's rows, in the order of the enrollment id."""
        if after is not None:
            query = query.where(admin.enrollments.c.id > after)
        with self.admin_engine.connect() as connection:
            return list(
                connection.execute(
                    query.order_by(admin.enrollments.c.id).limit(self.page_rows)
                ).all()
            )

    def _read_keys(
        self, shared: Mapping[str, CourseRef], keys: set[tuple[str, int]]
    ) -> tuple[list[LocalEnrollment], dict[int, str]]:
        """Every own row of these (local course, participant) keys, and which of them arrived
        by sync (with the status sync gave them)."""
        with self.sync_lock:
            with self.admin_engine.connect() as connection:
                rows = _rows_of_keys(connection, keys)
            enrollments = self._enrollments(shared, rows)
            foreign = self._foreign_statuses([row.enrollment_id for row in enrollments])
        return enrollments, foreign

    def _read(
        self, shared: Mapping[str, CourseRef], query: Select[Any]
    ) -> tuple[list[LocalEnrollment], dict[int, str]]:
        """All rows of a query (a course's: a sync request's answer), and which of them
        arrived by sync."""
        with self.sync_lock:
            with self.admin_engine.connect() as connection:
                rows = connection.execute(query).all()
            enrollments = self._enrollments(shared, rows)
            foreign = self._foreign_statuses([row.enrollment_id for row in enrollments])
        return enrollments, foreign

    def _enrollments(
        self, shared: Mapping[str, CourseRef], rows: Sequence[Row[Any]]
    ) -> list[LocalEnrollment]:
        """Rows as enrollments, with the waitlist marks the state DB keeps where the admin DB
        has no columns for them."""
        # A course no longer shared since `shared` was read is left for the next poll.
        rows = [row for row in rows if row.master_school or row.number in shared]
        marks = kept.with_marks(
            self.state_engine,
            [
                {
                    "id": r.id,
                    "waitlisted_since": r.waitlisted_since,
                    "waitlisted_by_admin": r.waitlisted_by_admin,
                }
                for r in rows
            ],
        )
        return [_local_enrollment(row, shared, mark) for row, mark in zip(rows, marks, strict=True)]

    def _newest_stamp(self) -> datetime | None:
        """The newest modification stamp in the admin DB (index lookups): a poll of many pages
        moves its watermark no further, since rows changed while it reads lie behind the id
        it has reached and are for the next poll to read."""
        with self.admin_engine.connect() as connection:
            stamps = connection.execute(
                select(
                    select(func.max(admin.enrollments.c.modified_at)).scalar_subquery(),
                    select(func.max(admin.participants.c.modified_at)).scalar_subquery(),
                )
            ).one()
        return max((stamp for stamp in stamps if stamp is not None), default=None)

    def _watermark(self) -> datetime | None:
        with self.state_engine.connect() as connection:
            return connection.execute(
                select(state.cursor.c.watermark).where(state.cursor.c.id == 1)
            ).scalar()

    def _advance(self, watermark: datetime | None) -> None:
        if watermark is None:
            return
        with self.state_engine.begin() as connection:
            upsert(connection, state.cursor, [{"id": 1, "watermark": watermark}])

    def _foreign_statuses(self, enrollment_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        with self.state_engine.connect() as connection:
            for condition in one_of(connection, state.applied.c.enrollment_id, enrollment_ids):
                found.update(
                    connection.execute(
                        select(state.applied.c.enrollment_id, state.applied.c.status).where(
                            condition
                        )
                    ).all()
                )
        return found

    def _shadow(self, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], Row[Any]]:
        """The published rows of these keys: per course one query on its participant numbers
        (an index prefix), not a tuple IN list."""
        published = state.published.c
        by_course: dict[tuple[str, str], list[int]] = {}
        for master, number, participant in keys:
            by_course.setdefault((master, number), []).append(participant)
        found: dict[tuple[str, str, int], Row[Any]] = {}
        with self.state_engine.connect() as connection:
            for (master, number), participants in by_course.items():
                for condition in one_of(connection, published.participant_number, participants):
                    for row in connection.execute(
                        select(state.published).where(
                            published.course_master == master,
                            published.course_number == number,
                            condition,
                        )
                    ):
                        found[(row.course_master, row.course_number, row.participant_number)] = row
        return found

    # -- the two ways of finding changes ---------------------------------------------------

    def poll(self, now: datetime) -> CaptureResult:
        """Publish what changed since the last poll; the first poll of a new state DB scans.

        A row exactly as the last poll read it (the overlap window reads it again) is passed
        over by its digest; only the keys of the rows that changed are read whole (every row
        of the key) and judged."""
        watermark = self._watermark()
        if watermark is None:
            return self.full_scan(now)
        # Stamps are wall time: around the autumn's repeated hour the window covers all of it.
        since = poll_since(watermark, self.overlap, self.timezone)
        shared = self._shared_by_number()
        query = _window_query(since, shared)
        result = CaptureResult()
        seen: dict[int, int] = {}
        newest, bound, after = watermark, None, None
        while True:
            page = self._page(query, after)
            digests: dict[int, int] = {}
            changed: set[tuple[str, int]] = set()
            for row in page:
                # All the row's fields: a stamp of whole seconds stays the same through an
                # edit made in the second the row was written.
                values: tuple[Any, ...] = tuple(row)
                digest = digests[values[0]] = hash(values)
                if self._seen.get(values[0]) != digest:
                    changed.add((values[1], values[2]))
            if changed:
                rows, foreign = self._read_keys(shared, changed)
                result.foreign_edits += self._report_foreign_edits(
                    ((r.enrollment_id, r.status, r.course.number) for r in rows), foreign
                )
                found, stamp = self._publish_changes(rows, foreign, now)
                result.add(found)
                newest = max(newest, stamp or newest)
            seen.update(digests)
            if len(page) < self.page_rows:
                break
            if bound is None:
                bound = self._newest_stamp()
            after = page[-1].id
        if bound is not None:
            newest = max(watermark, min(newest, bound))
        self._advance(newest)
        self._seen = seen
        result.outbox_rows += self.publish_course_settings(now, since=since)
        return result

    def full_scan(self, now: datetime) -> CaptureResult:
        """Compare every own enrollment of shared courses with what was last published, a page
        of rows at a time; then publish the keys no row states any more (hard deletes)."""
        # With no own rows yet, polls start from the time of this scan (the admin DB's
        # clock, as the admin product stamps rows), not with another full scan.
        scanned_at = self.admin_clock()
        watermark = self._watermark()
        newest = watermark or scanned_at
        result = CaptureResult()
        present: set[tuple[str, str, int]] = set()
        after = None
        shared = self._shared_by_number()
        query = _scan_query(shared)
        while True:
            with self.sync_lock:
                page = self._page(query, after)
                page_foreign = self._foreign_statuses([row.id for row in page])
            result.foreign_edits += self._report_foreign_edits(
                (
                    (row.id, row.status or "", _course_number(row, shared))
                    for row in page
                    if row.id in page_foreign
                ),
                page_foreign,
            )
            keys = {
                (row.number, row.participant_number)
                for row in page
                if row.id not in page_foreign and not arrived_by_sync(row.remark)
            }
            if keys:
                rows, foreign = self._read_keys(shared, keys)
                found, stamp = self._publish_changes(rows, foreign, now, present=present)
                result.add(found)
                newest = max(newest, stamp or newest)
            if len(page) < self.page_rows:
                break
            after = page[-1].id
        result.add(self._publish_deletions(present, now))
        self._advance(newest)
        result.outbox_rows += self.publish_course_settings(now)
        return result

    def _publish_changes(
        self,
        rows: list[LocalEnrollment],
        foreign: dict[int, str],
        now: datetime,
        *,
        present: set[tuple[str, str, int]] | None = None,
    ) -> tuple[CaptureResult, datetime | None]:
        """Publish the keys of these rows (every own row of each key) whose state changed, in
        one state-DB transaction; returns what was found and the newest stamp of own rows.
        `present` (the full scan): the keys judged so far, to which these are added; a key
        whose published row is no longer among its rows lost that row to a hard delete."""
        result = CaptureResult()
        # Only own rows move the watermark: rows applied by sync carry the adapter's stamps.
        newest = max(
            (r.modified_at for r in rows if r.modified_at and r.enrollment_id not in foreign),
            default=None,
        )
        own_states = self._own_states(_own(rows, foreign))
        keys = [_key_tuple(current.key) for current, _ in own_states]
        shadow = self._shadow(keys)
        if present is not None:
            present.update(keys)
        row_ids = {row.enrollment_id for row in rows}

        now_us = _microseconds(now)
        changes: list[tuple[EnrollmentState, int, int]] = []
        repointed: list[tuple[Row[Any], int]] = []
        for current, enrollment_id in own_states:
            previous = shadow.get(_key_tuple(current.key))
            lost = False
            if previous is not None and present is not None:
                lost = previous.enrollment_id not in row_ids
                if lost:
                    self._report_hard_delete(previous, current.key)
                    result.deleted += 1
            digest = fingerprint(current)
            if previous is not None and previous.fingerprint == digest:
                if lost:
                    repointed.append((previous, enrollment_id))
                continue
            version = next_version(previous.version if previous else None, now_us)
            changes.append((current, version, enrollment_id))
        result.published = len(changes)
        result.outbox_rows = self._write(changes, now, repointed)
        return result, newest

    def _publish_deletions(
        self, present: set[tuple[str, str, int]], now: datetime
    ) -> CaptureResult:
        """The published keys that no own row states any more: each a cancellation (V4),
        written a page at a time."""
        result = CaptureResult()
        now_us = _microseconds(now)
        published = state.published.c
        with self.state_engine.connect() as connection:
            gone = [
                row
                for row in connection.execute(
                    select(state.published).where(published.status != Status.CANCELLED.value)
                )
                if (row.course_master, row.course_number, row.participant_number) not in present
            ]
        for start in range(0, len(gone), self.page_rows):
            changes: list[tuple[EnrollmentState, int, int]] = []
            for previous in gone[start : start + self.page_rows]:
                key = EnrollmentKey(
                    self.school,
                    previous.participant_number,
                    CourseRef(previous.course_master, previous.course_number),
                )
                self._report_hard_delete(previous, key)
                version = next_version(previous.version, now_us)
                changes.append((cancellation_of_deleted(key), version, previous.enrollment_id))
            result.deleted += len(changes)
            result.published += len(changes)
            result.outbox_rows += self._write(changes, now, [])
        return result

    def _write(
        self,
        changes: list[tuple[EnrollmentState, int, int]],
        now: datetime,
        repointed: list[tuple[Row[Any], int]],
    ) -> int:
        """The outbox rows of these changes and their published shadow, in one transaction;
        returns the outbox rows written."""
        if not changes and not repointed:
            return 0
        with self.state_engine.begin() as connection:
            outbox_rows = enqueue_states(
                connection, self.school, [(s, v) for s, v, _ in changes], now
            )
            upsert(
                connection,
                state.published,
                [
                    {
                        "course_master": current.key.course.master_school,
                        "course_number": current.key.course.number,
                        "participant_number": current.key.participant_number,
                        "enrollment_id": enrollment_id,
                        "status": current.status.value,
                        "fingerprint": fingerprint(current),
                        "version": version,
                    }
                    for current, version, enrollment_id in changes
                ]
                + [
                    # Nothing to publish, but the shadow now names the row that states the key.
                    {**previous._asdict(), "enrollment_id": enrollment_id}
                    for previous, enrollment_id in repointed
                ],
            )
        for current, version, _ in changes:
            log.info(
                "enrollment.captured",
                school=self.school,
                course=current.key.course.number,
                participant_number=current.key.participant_number,
                status=current.status.value,
                version=version,
            )
        return outbox_rows

    def _report_hard_delete(self, previous: Row[Any], key: EnrollmentKey) -> None:
        log.warning(
            "enrollment.hard_deleted",
            school=self.school,
            course=key.course.number,
            enrollment_id=previous.enrollment_id,
            participant_number=key.participant_number,
            hint="cancel (status S) instead of deleting: deletion disturbs sync",
        )

    def _own_states(self, rows: list[LocalEnrollment]) -> list[tuple[EnrollmentState, int]]:
        states = []
        for row in rows:
            try:
                states.append((outbound_state(row, self.school), row.enrollment_id))
            except UnsyncableRowError as error:
                log.warning("enrollment.unsyncable", school=self.school, reason=str(error))
        return states

    def _report_foreign_edits(
        self, rows: Iterable[tuple[int, str, str]], foreign: dict[int, str]
    ) -> int:
        """A foreign row edited here (V6, V11) is reported once; it never travels back.
        `rows`: (enrollment id, status, course number) of the rows read."""
        edits = 0
        for enrollment_id, status, course in rows:
            applied_status = foreign.get(enrollment_id)
            if applied_status is None or applied_status == status:
                continue
            edits += 1
            marker = (enrollment_id, status)
            if marker not in self._reported_edits:
                self._reported_edits.add(marker)
                log.warning(
                    "foreign_enrollment.edited_locally",
                    school=self.school,
                    course=course,
                    enrollment_id=enrollment_id,
                    status=status,
                    synced_status=applied_status,
                    hint="only the school where the enrollment was made may change it",
                )
        return edits

    # -- courses and sync requests ----------------------------------------------------------

    def shared_courses(self) -> dict[CourseRef, str]:
        """Every shared course in the admin DB, with its local course number."""
        with self.admin_engine.connect() as connection:
            shared = kept.shared_courses(connection, self.state_engine)
        return {ref: number for number, ref in shared.items()}

    def _shared_by_number(self) -> dict[str, CourseRef]:
        with self.admin_engine.connect() as connection:
            return kept.shared_courses(connection, self.state_engine)

    def join_new_courses(
        self, now: datetime, courses: Iterable[CourseRef] | None = None
    ) -> list[CourseRef]:
        """Of `courses` (by default every shared course), those seen for the first time:
        record them and ask the network for their enrollments (V1). The caller binds its
        queue for them first, so that no answer is published before the queue hears it."""
        courses = list(self.shared_courses() if courses is None else courses)
        with self.state_engine.begin() as connection:
            joined = {
                CourseRef(master, number)
                for master, number in connection.execute(
                    select(
                        state.joined_courses.c.course_master, state.joined_courses.c.course_number
                    )
                ).all()
            }
            new = [course for course in courses if course not in joined]
            for course in new:
                connection.execute(
                    state.joined_courses.insert().values(
                        course_master=course.master_school,
                        course_number=course.number,
                        joined_at=now,
                    )
                )
                enqueue_sync_request(connection, self.school, course, now)
        for course in new:
            log.info(
                "course.joined",
                school=self.school,
                course=course.number,
                master=course.master_school,
            )
        return new

    def resend_course(self, course: CourseRef, requested_by: str, now: datetime) -> int:
        """Answer a sync request: publish the current state of every own enrollment of the
        course again, with its published version, to the requesting school alone (the other
        members have it already)."""
        local = {n: ref for n, ref in self._shared_by_number().items() if ref == course}
        rows, foreign = self._read(
            local, _own_rows_query(local).where(_course.number.in_(sorted(local)))
        )
        own_states = self._own_states(_own(rows, foreign))
        shadow = self._shadow([_key_tuple(current.key) for current, _ in own_states])
        resend: list[tuple[EnrollmentState, int]] = []
        for current, _ in own_states:
            previous = shadow.get(_key_tuple(current.key))
            # Not yet published, or changed since: the next poll publishes it anyway.
            if previous is not None and previous.fingerprint == fingerprint(current):
                resend.append((current, previous.version))
        with self.state_engine.begin() as connection:
            count = enqueue_states(
                connection,
                self.school,
                resend,
                now,
                answer_to=requested_by,
            )
        log.info(
            "course.resent",
            school=self.school,
            course=course.number,
            requested_by=requested_by,
            enrollments=len(resend),
        )
        return count

    # -- course settings (the master's, D1-D4) ---------------------------------------------

    def publish_course_settings(
        self, now: datetime, *, since: datetime | None = None, resend: CourseRef | None = None
    ) -> int:
        """Publish the settings of the courses this school is master of, when they changed
        (or, for `resend`, again as they are); returns how many were enqueued."""
        shared = self._shared_by_number()
        own = sorted(n for n, ref in shared.items() if ref.master_school == self.school)
        conditions: list[ColumnElement[bool]] = [_course.number.in_(own)]
        if since is not None and not kept.kept_course_keys():
            # Settings the state DB keeps change no stamp: those courses are compared each time.
            conditions.append(_course.modified_at >= since)
        if resend is not None:
            conditions.append(_course.number.in_([n for n in own if shared[n] == resend]))
        with self.admin_engine.connect() as connection:
            rows = kept.course_rows(connection, self.state_engine, *conditions)
        if not rows:
            return 0
        shadow_columns = state.published_courses.c
        with self.state_engine.connect() as connection:
            shadow = {
                row.course_number: row
                for row in connection.execute(
                    select(state.published_courses).where(
                        shadow_columns.course_master == self.school
                    )
                ).all()
            }
        now_us = _microseconds(now)
        enqueued = 0
        with self.state_engine.begin() as connection:
            for row in rows:
                course = shared[row["number"]]
                try:
                    settings = course_settings(row)
                except InvalidCourseSettingsError as error:
                    log.warning("course.settings_invalid", school=self.school, reason=str(error))
                    continue
                digest = settings_fingerprint(settings)
                previous = shadow.get(course.number)
                if previous is not None and previous.fingerprint == digest:
                    if resend is None:
                        continue
                    version = previous.version
                else:
                    version = next_version(previous.version if previous else None, now_us)
                    upsert(
                        connection,
                        state.published_courses,
                        [
                            {
                                "course_master": self.school,
                                "course_number": course.number,
                                "fingerprint": digest,
                                "version": version,
                            }
                        ],
                    )
                enqueue_course_settings(connection, course, settings, version, now)
                enqueued += 1
                log.info(
                    "course.settings_published",
                    school=self.school,
                    course=course.number,
                    version=version,
                )
        return enqueued
