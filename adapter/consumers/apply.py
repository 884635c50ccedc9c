"""Applying other schools' enrollment states to this school's admin DB (`apply_enrollment_changes`).

Safe to repeat (DESIGN decisions 1 and 4): an event is applied only when its version is newer
than the one recorded, and the rows it demands are computed and only differences are
written. A version counts only once the admin DB holds what it demands (below). A foreign row
is never deleted; the balance of a row once created belongs to the master and is never
written again (V12).

Safe across a crash between the two commits: the rows a batch inserts are mapped in the state
DB (network key -> admin ids, with their versions) and committed there, with a note of the
batch (`state.apply_batch`), just before the admin DB commits; the note is dropped once the
admin commit returned. Whatever stops the write in between, a later write finds the mapping.
After a start or a failed write, a batch still noted is checked against the admin DB by
content before capture polls or apply goes on (`ensure_recovered`): what the admin DB holds
is kept, what it rolled back is forgotten and applied again (SQLite even hands the same ids
out again). The versions of rows that existed before (and of rows adopted) are recorded
after the admin commit: applying them again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import (
    Column,
    Connection,
    CursorResult,
    Engine,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, Role, Status, is_newer
from adapter.mapping.courses import settings_columns
from adapter.mapping.inbound import (
    REMARK_PREFIX,
    ForeignView,
    arrived_by_sync,
    changed_fields,
    foreign_view,
    participant_update,
)
from adapter.messages import (
    CourseSettingsChanged,
    EnrollmentChanged,
    course_ref,
    enrollment_state,
    settings_of,
)
from adapter.store import admin, kept, state
from adapter.store.db import keyed, one_of, upsert

log = structlog.get_logger("adapter.consumers")

_enrollment = admin.columns_of("enrollments")
_participant = admin.columns_of("participants")
_course = admin.columns_of("courses")


# Local participant rows an applier remembers at most (some MiB): a master's remote
# participants of the courses it is receiving.
_KNOWN_PARTICIPANTS = 50_000


class RejectedEventError(Exception):
    """An event that can never be applied here; it goes to the dead-letter queue."""

    reason = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownSchoolError(RejectedEventError):
    reason = "unknown_school"


class UnknownCourseError(RejectedEventError):
    reason = "unknown_course"


class InvalidSettingsError(RejectedEventError):
    reason = "invalid_settings"


@dataclass(frozen=True, slots=True)
class School:
    """What this school knows of another school of the network."""

    id: str
    name: str
    email: str | None = None


@dataclass(slots=True)
class Outcome:
    """What became of one event."""

    event: EnrollmentChanged
    result: str  # applied | unchanged | stale | own | rejected | failed
    error: RejectedEventError | None = None
    failure: str | None = None


@dataclass(slots=True)
class _Work:
    event: EnrollmentChanged
    state: EnrollmentState
    view: ForeignView
    local_course: str
    outcome: Outcome


@dataclass(slots=True)
class _StateWrites:
    """What the state DB must learn of one batch. `applied`: versions of rows that were mapped
    already (recorded after the admin commit); `mapped`: rows mapped by this batch, with the
    course and participant row each was written with (recorded before it); `participants`:
    new participant rows and the fields each was written with."""

    applied: list[tuple[EnrollmentKey, int, str, int]] = field(default_factory=list)
    mapped: list[tuple[EnrollmentKey, int, str, int, str, int]] = field(default_factory=list)
    participants: dict[tuple[str, int], int] = field(default_factory=dict)
    participant_fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    marks: dict[int, dict[str, Any]] = field(default_factory=dict)  # see `kept.keep_marks`


def _fingerprint(fields: Mapping[str, Any]) -> str:
    """A participant row's synced fields as a short digest: enough to tell the row written
    from another one, and no personal data in the state DB."""
    values = [fields.get(name) for name in ("last_name", "first_name", "main_email", "main_phone")]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def _applied_row(
    key: EnrollmentKey, version: int, status: str, enrollment_id: int
) -> dict[str, Any]:
    return {
        "origin_school": key.origin_school,
        "course_master": key.course.master_school,
        "course_number": key.course.number,
        "participant_number": key.participant_number,
        "version": version,
        "status": status,
        "enrollment_id": enrollment_id,
    }


def _key_tuple(key: EnrollmentKey) -> tuple[str, str, str, int]:
    return (key.origin_school, key.course.master_school, key.course.number, key.participant_number)


class Applier:
    """Applies batches of events for one school."""

    def __init__(
        self,
        admin_engine: Engine,
        state_engine: Engine,
        school: str,
        directory: Mapping[str, School],
        sync_lock: threading.Lock | None = None,
    ) -> None:
        self.admin_engine = admin_engine
        self.state_engine = state_engine
        self.school = school
        self.directory = directory
        # Shared with capture: from the admin commit to the state commit, the rows just
        # written are not yet known to be foreign, and capture must not read them.
        self.sync_lock = sync_lock or threading.Lock()
        self._orphans_possible = True
        # After a start or a failed write the last batch may have stopped between its two
        # commits: it is checked before anything is read of the state DB.
        self._batch_unchecked = True
        # What every batch would ask again, known from committed batches: the local number of
        # each shared course, and the local participant row of each school and (at a master)
        # remote participant. Forgotten after a failed write or a check of a cut batch (which
        # may forget a row), and when it grows past `_KNOWN_PARTICIPANTS`.
        self._courses: dict[CourseRef, str] = {}
        self._known_participants: dict[tuple[str, int], int] = {}
        self._participant_keys: dict[int, tuple[str, int]] = {}  # the other way round

    def apply_enrollment_changes(
        self, events: Sequence[EnrollmentChanged], now: datetime, *, repair: bool = False
    ) -> list[Outcome]:
        """Apply a batch in one admin-DB transaction; what it maps is committed to the state DB
        just before the admin DB, the versions of rows mapped before just after it.

        `repair`: the events answer this school's own sync request, which it sends when it
        joins or is repaired (`vhs-sync resync`). Such a state is applied at the version held
        too: the rows it demands are checked, so that a synced row deleted or edited here is
        booked again as its origin has it, and rows whose mapping the state DB lost are
        taken over rather than booked twice. Applying the state that was applied already
        changes nothing else."""
        self.ensure_recovered()
        outcomes = [Outcome(event, "stale") for event in events]
        candidates = self._newest_per_key(outcomes)
        with self.state_engine.connect() as connection:
            applied = self._applied_versions(connection, [w.state.key for w in candidates])
            participants = self._remote_participants(connection, candidates)

        def due(item: _Work) -> bool:
            version = item.event.data.version
            held = applied.get(_key_tuple(item.state.key), (None, 0))[0]
            return is_newer(version, held) or (repair and version == held)

        work = [item for item in candidates if due(item)]
        if not work:
            return outcomes
        if repair:
            self._orphans_possible = True
        with self.sync_lock:
            try:
                fresh = self._write(work, applied, participants, now)
            except BaseException:
                self._orphans_possible = True
                self._batch_unchecked = True
                self._forget_known()
                raise
        self._remember_participants(participants, fresh)
        return outcomes

    def _forget_known(self) -> None:
        self._courses.clear()
        self._known_participants.clear()
        self._participant_keys.clear()

    def _remember_participants(
        self, participants: Mapping[tuple[str, int], int], fresh: Mapping[tuple[str, int], int]
    ) -> None:
        """Remember the participant rows a committed batch used. A row it inserted (`fresh`)
        may carry the number of a row deleted since, whose mapping `_record_mapping` dropped:
        what was remembered of that number goes."""
        known, keys = self._known_participants, self._participant_keys
        if len(known) + len(participants) > _KNOWN_PARTICIPANTS:
            self._forget_known()
        taken = set(fresh.values())
        for key, local in participants.items():
            if local in taken and fresh.get(key) != local:
                continue  # a mapping of the deleted row that had this number
            stale = keys.get(local)
            if stale is not None and stale != key:
                known.pop(stale, None)
            old = known.get(key)
            if old is not None and old != local:
                keys.pop(old, None)
            known[key] = local
            keys[local] = key

    def _write(
        self,
        work: list[_Work],
        applied: Mapping[tuple[str, str, str, int], tuple[int, int]],
        participants: dict[tuple[str, int], int],
        now: datetime,
    ) -> dict[tuple[str, int], int]:
        """Write the batch; returns the participant rows it inserted."""
        writes = _StateWrites()
        with self.admin_engine.begin() as connection:
            local_courses = self._local_courses(connection, {w.state.key.course for w in work})
            for item in work:
                local = local_courses.get(item.state.key.course)
                if local is None:
                    item.outcome.result = "rejected"
                    item.outcome.error = UnknownCourseError(
                        f"course {item.state.key.course.number} of master "
                        f"{item.state.key.course.master_school} is not in this school's admin DB"
                    )
                    continue
                item.local_course = local
            work = [item for item in work if item.outcome.result != "rejected"]
            self._write_admin(connection, work, applied, participants, writes, now)
            kept.keep_marks(self.state_engine, writes.marks)
            noted = bool(writes.mapped or writes.participants)
            if noted:
                self._record_mapping(writes, now)
        if writes.applied or noted:
            with self.state_engine.begin() as connection:
                if writes.applied:
                    upsert(
                        connection,
                        state.applied,
                        [_applied_row(*entry) for entry in writes.applied],
                    )
                if noted:  # the admin DB holds the batch: nothing left to check
                    connection.execute(delete(state.apply_batch).where(state.apply_batch.c.id == 1))
        return writes.participants

    def _record_mapping(self, writes: _StateWrites, now: datetime) -> None:
        """Commit the rows this batch inserted, and a note of them, to the state DB while the
        admin transaction that inserted them is still open: a retry finds them whatever stops
        the write before the admin commit returns, and `_check_unfinished_batch` tells which
        of them the admin DB holds."""
        note = {
            "enrollments": [[eid, course, row] for _, _, _, eid, course, row in writes.mapped],
            "participants": [
                [number, _fingerprint(fields)]
                for number, fields in writes.participant_fields.items()
            ],
        }
        with self.state_engine.begin() as connection:
            # An id the admin DB has just handed out is free there: a mapping that still
            # names it is of a row deleted since (SQLite hands the highest id out again),
            # and would refuse the new mapping. The new one holds.
            _forget_mappings_of(
                connection,
                state.applied.c.enrollment_id,
                [eid for _, _, _, eid, _, _ in writes.mapped],
            )
            _forget_mappings_of(
                connection,
                state.remote_participants.c.local_number,
                list(writes.participants.values()),
            )
            upsert(
                connection,
                state.apply_batch,
                [
                    {
                        "id": 1,
                        "batch_id": uuid.uuid4().hex,
                        "written_at": now,
                        "entries": json.dumps(note).encode(),
                    }
                ],
            )
            upsert(
                connection,
                state.remote_participants,
                [
                    {"origin_school": origin, "participant_number": number, "local_number": local}
                    for (origin, number), local in writes.participants.items()
                ],
            )
            upsert(
                connection,
                state.applied,
                [_applied_row(key, v, status, eid) for key, v, status, eid, _, _ in writes.mapped],
            )

    def recover(self) -> None:
        """Check the batch a crash may have cut short (`_check_unfinished_batch`)."""
        with self.sync_lock:
            self._forget_known()
            self._check_unfinished_batch()
        self._batch_unchecked = False

    def ensure_recovered(self) -> None:
        """`recover`, unless done since the start or the last failed write. Capture calls it
        before each poll, so that it never reads a mapping the admin DB rolled back; apply
        before each batch."""
        if self._batch_unchecked:
            self.recover()

    def _check_unfinished_batch(self) -> None:
        """The last batch that mapped rows, checked against the admin DB by content: an
        enrollment row must exist with the course, participant row and sync remark it was
        written with, a participant row with the fields it was written with. What does not is
        a rolled-back insert (its id may even be another row by now): its mapping and version
        are forgotten, so that the event is applied again."""
        with self.state_engine.connect() as connection:
            batch = connection.execute(
                select(state.apply_batch).where(state.apply_batch.c.id == 1)
            ).first()
        if batch is None:
            return
        note = json.loads(batch.entries)
        enrollments: list[list[Any]] = note["enrollments"]
        people: list[list[Any]] = note["participants"]
        with self.admin_engine.connect() as connection:
            ids = [entry[0] for entry in enrollments]
            rows = {
                row.id: row
                for start in range(0, len(ids), 300)
                for row in connection.execute(
                    select(
                        *keyed(
                            _enrollment.id,
                            _enrollment.course_number,
                            _enrollment.participant_number,
                            _enrollment.company_number,
                            _enrollment.remark,
                        )
                    ).where(_enrollment.id.in_(ids[start : start + 300]))
                ).all()
                if arrived_by_sync(row.remark)
            }
            written = {
                number: _fingerprint(fields)
                for number, fields in _participants(
                    connection, [entry[0] for entry in people]
                ).items()
            }
        found = {i: [row.id, row.course_number, row.participant_number] for i, row in rows.items()}
        lost_rows = [entry[0] for entry in enrollments if found.get(entry[0]) != entry]
        # The participant rows a kept enrollment points to (the participant, and at the master
        # the company) are the ones written, whatever staff have changed in them since.
        referenced = {
            number
            for entry in enrollments
            if found.get(entry[0]) == entry
            for number in (rows[entry[0]].participant_number, rows[entry[0]].company_number)
        }
        lost_people = [
            number
            for number, digest in people
            if number not in referenced and written.get(number) != digest
        ]
        with self.state_engine.begin() as connection:
            for start in range(0, len(lost_rows), 300):
                connection.execute(
                    delete(state.applied).where(
                        state.applied.c.enrollment_id.in_(lost_rows[start : start + 300])
                    )
                )
            for start in range(0, len(lost_people), 300):
                connection.execute(
                    delete(state.remote_participants).where(
                        state.remote_participants.c.local_number.in_(
                            lost_people[start : start + 300]
                        )
                    )
                )
            connection.execute(delete(state.apply_batch).where(state.apply_batch.c.id == 1))
        (log.warning if lost_rows or lost_people else log.info)(
            "apply.batch_checked",
            school=self.school,
            batch=batch.batch_id,
            enrollments_kept=len(enrollments) - len(lost_rows),
            enrollments_forgotten=len(lost_rows),
            participants_kept=len(people) - len(lost_people),
            participants_forgotten=len(lost_people),
        )

    def apply_course_settings(self, event: CourseSettingsChanged) -> bool:
        """A subscriber's course follows its master's settings; returns whether it changed."""
        course = course_ref(event.data.course)
        if course.role_of(self.school) is Role.MASTER:
            return False
        try:
            settings = settings_of(event.data.settings)
        except ValueError as error:
            raise InvalidSettingsError(f"course {course.number}: {error}") from error
        key = {"course_master": course.master_school, "course_number": course.number}
        with self.state_engine.connect() as connection:
            applied = connection.execute(
                select(state.applied_courses.c.version).where(
                    state.applied_courses.c.course_master == course.master_school,
                    state.applied_courses.c.course_number == course.number,
                )
            ).scalar()
        if not is_newer(event.data.version, applied):
            return False
        with self.admin_engine.begin() as connection:
            local = kept.local_course_number(connection, self.state_engine, course)
            updated = local is not None and kept.write_course_fields(
                connection, self.state_engine, local, settings_columns(settings)
            )
        if not updated:
            raise UnknownCourseError(
                f"course {course.number} of master {course.master_school} is not in this "
                "school's admin DB"
            )
        with self.state_engine.begin() as connection:
            upsert(connection, state.applied_courses, [{**key, "version": event.data.version}])
        log.info(
            "course.settings_applied",
            school=self.school,
            course=course.number,
            version=event.data.version,
        )
        return True

    # -- deciding what to do ----------------------------------------------------------------

    def _newest_per_key(self, outcomes: list[Outcome]) -> list[_Work]:
        newest: dict[tuple[str, str, str, int], _Work] = {}
        for outcome in outcomes:
            data = outcome.event.data
            if data.origin_school == self.school:
                outcome.result = "own"
                continue
            origin = self.directory.get(data.origin_school)
            if origin is None:
                outcome.result = "rejected"
                outcome.error = UnknownSchoolError(
                    f"school {data.origin_school!r} is not in this school's network"
                )
                continue
            current = enrollment_state(data)
            key = _key_tuple(current.key)
            if key in newest and newest[key].event.data.version >= data.version:
                continue
            newest[key] = _Work(
                outcome.event, current, foreign_view(current, self.school, origin.name), "", outcome
            )
        return list(newest.values())

    def _applied_versions(
        self, connection: Connection, keys: Iterable[EnrollmentKey]
    ) -> dict[tuple[str, str, str, int], tuple[int, int]]:
        """Version and local row of each key applied before: per (origin, course) one query on
        the participant numbers, a prefix of the primary key (a batch is mostly one course)."""
        columns = state.applied.c
        by_course: dict[tuple[str, str, str], list[int]] = {}
        for key in keys:
            origin, master, number, participant = _key_tuple(key)
            by_course.setdefault((origin, master, number), []).append(participant)
        found: dict[tuple[str, str, str, int], tuple[int, int]] = {}
        for (origin, master, number), participants in by_course.items():
            for condition in one_of(connection, columns.participant_number, participants):
                rows = connection.execute(
                    select(
                        columns.participant_number, columns.version, columns.enrollment_id
                    ).where(
                        columns.origin_school == origin,
                        columns.course_master == master,
                        columns.course_number == number,
                        condition,
                    )
                )
                for participant, version, enrollment_id in rows:
                    found[(origin, master, number, participant)] = (version, enrollment_id)
        return found

    def _remote_participants(
        self, connection: Connection, work: Sequence[_Work]
    ) -> dict[tuple[str, int], int]:
        """Local participant numbers of the schools themselves (number 0) and, at a master, of
        remote participants."""
        wanted = {(w.state.key.origin_school, 0) for w in work}
        wanted |= {
            (w.state.key.origin_school, w.state.key.participant_number)
            for w in work
            if w.view.role is Role.MASTER
        }
        known = self._known_participants
        found = {key: known[key] for key in wanted if key in known}
        columns = state.remote_participants.c
        by_origin: dict[str, list[int]] = {}
        for origin, number in sorted(wanted - found.keys()):
            by_origin.setdefault(origin, []).append(number)
        for origin, numbers in by_origin.items():
            for condition in one_of(connection, columns.participant_number, numbers):
                found.update(
                    ((origin, number), local)
                    for number, local in connection.execute(
                        select(columns.participant_number, columns.local_number).where(
                            columns.origin_school == origin, condition
                        )
                    ).all()
                )
        return found

    def _local_courses(
        self, connection: Connection, courses: set[CourseRef]
    ) -> dict[CourseRef, str]:
        if not courses <= self._courses.keys():
            shared = kept.shared_courses(connection, self.state_engine)
            local = {ref: number for number, ref in shared.items()}
            self._courses.update((course, local[course]) for course in courses if course in local)
        return {course: self._courses[course] for course in courses if course in self._courses}

    # -- writing the admin DB ---------------------------------------------------------------

    def _write_admin(
        self,
        connection: Connection,
        work: list[_Work],
        applied: Mapping[tuple[str, str, str, int], tuple[int, int]],
        participants: dict[tuple[str, int], int],
        writes: _StateWrites,
        now: datetime,
    ) -> None:
        known_ids = [
            applied[_key_tuple(w.state.key)][1] for w in work if _key_tuple(w.state.key) in applied
        ]
        current_rows = {
            row.id: row._asdict()
            for condition in one_of(connection, _enrollment.id, known_ids)
            for row in connection.execute(
                select(
                    *keyed(
                        _enrollment.id,
                        _enrollment.status,
                        _enrollment.registered_on,
                        _enrollment.participant_number,
                    ),
                    admin.column_or_null("enrollments", "waitlisted_since"),
                    admin.column_or_null("enrollments", "waitlisted_by_admin"),
                ).where(condition)
            ).all()
        }
        kept.with_marks(self.state_engine, list(current_rows.values()))
        orphans = self._orphans(
            connection, [w for w in work if _key_tuple(w.state.key) not in applied]
        )
        self._participant_rows(
            connection, [w for w in work if w.view.role is Role.MASTER], participants, writes, now
        )
        new_rows: list[dict[str, Any]] = []
        new_items: list[_Work] = []
        updates = _Updates(_enrollment.id)
        for item in work:
            key = item.state.key
            school_row = self._school_row(connection, key.origin_school, participants, writes, now)
            participant_row = school_row
            if item.view.role is Role.MASTER:
                participant_row = participants[(key.origin_school, key.participant_number)]
            entry = applied.get(_key_tuple(key))
            enrollment_id = entry[1] if entry else None
            current = current_rows.get(enrollment_id) if enrollment_id is not None else None
            if current is None and enrollment_id is None:
                adoptable = orphans.get((item.local_course, participant_row))
                if adoptable:
                    enrollment_id = adoptable.pop()
                    current = {}
                    log.info("enrollment.adopted", school=self.school, enrollment_id=enrollment_id)
            if current is None:
                if enrollment_id is not None:
                    log.warning(
                        "foreign_enrollment.missing",
                        school=self.school,
                        course=item.local_course,
                        enrollment_id=enrollment_id,
                        hint="a synced enrollment was deleted here; it is booked again",
                    )
                new_rows.append(
                    {
                        "course_number": item.local_course,
                        "participant_number": participant_row,
                        "company_number": school_row if item.view.role is Role.MASTER else None,
                        "modified_at": now,
                        **item.view.new_enrollment(),
                    }
                )
                new_items.append(item)
                item.outcome.result = "applied"
                continue
            assert enrollment_id is not None
            changes = changed_fields(current, item.view.enrollment_fields())
            if changes:
                if in_row := admin.writable("enrollments", changes):
                    updates.add(enrollment_id, {**in_row, "modified_at": now})
                if item.view.status is Status.WAITLISTED:  # only a waiting row's are read
                    writes.marks[enrollment_id] = kept.marks_of(item.view.enrollment_fields())
                item.outcome.result = "applied"
            else:
                item.outcome.result = "unchanged"
            version, status = item.event.data.version, item.view.status.value
            if entry is None:
                # Adopted: mapped by this batch, but with no version until the admin DB has
                # committed the update, since a rolled-back update leaves the row as it was.
                writes.mapped.append(
                    (key, 0, status, enrollment_id, item.local_course, participant_row)
                )
            writes.applied.append((key, version, status, enrollment_id))
        updates.run(connection)
        new_ids = _insert_many(
            connection, _enrollment.id, [admin.writable("enrollments", row) for row in new_rows]
        )
        for item, row, enrollment_id in zip(new_items, new_rows, new_ids, strict=True):
            if item.view.status is Status.WAITLISTED:
                writes.marks[enrollment_id] = kept.marks_of(row)
            writes.mapped.append(
                (
                    item.state.key,
                    item.event.data.version,
                    item.view.status.value,
                    enrollment_id,
                    row["course_number"],
                    row["participant_number"],
                )
            )

    def _orphans(
        self, connection: Connection, new: list[_Work]
    ) -> dict[tuple[str, int], list[int]]:
        """Rows this adapter wrote whose mapping it does not hold (a state DB restored from an
        older copy): they are taken over instead of booked twice. Such rows can only be found
        after a start or a failed write, so only then is the course searched for them."""
        if not new or not self._orphans_possible:
            return {}
        self._orphans_possible = False
        courses = sorted({w.local_course for w in new})
        rows = connection.execute(
            select(_enrollment.id, _enrollment.course_number, _enrollment.participant_number).where(
                _enrollment.course_number.in_(courses),
                _enrollment.remark.like(f"{REMARK_PREFIX}%"),
            )
        ).all()
        if not rows:
            return {}
        with self.state_engine.connect() as state_connection:
            mapped = {
                enrollment_id
                for condition in one_of(
                    state_connection, state.applied.c.enrollment_id, [row.id for row in rows]
                )
                for enrollment_id in state_connection.execute(
                    select(state.applied.c.enrollment_id).where(condition)
                ).scalars()
            }
        orphans: dict[tuple[str, int], list[int]] = {}
        for row in rows:
            if row.id not in mapped:
                orphans.setdefault((row.course_number, row.participant_number), []).append(row.id)
        return orphans

    def _school_row(
        self,
        connection: Connection,
        origin: str,
        participants: dict[tuple[str, int], int],
        writes: _StateWrites,
        now: datetime,
    ) -> int:
        """The participant row that stands for a school: created once, then reused."""
        known = participants.get((origin, 0))
        if known is not None:
            return known
        school = self.directory[origin]
        fields = {"last_name": school.name, "first_name": "", "main_email": school.email}
        number: int = _inserted_id(
            connection.execute(insert(admin.participants).values(modified_at=now, **fields))
        )
        participants[(origin, 0)] = writes.participants[(origin, 0)] = number
        writes.participant_fields[number] = fields
        return number

    def _participant_rows(
        self,
        connection: Connection,
        work: list[_Work],
        participants: dict[tuple[str, int], int],
        writes: _StateWrites,
        now: datetime,
    ) -> None:
        """At the master: one row per (origin school, participant number), kept up to date;
        read in one query, the new ones inserted in one statement."""
        latest = {(w.state.key.origin_school, w.state.key.participant_number): w for w in work}
        known = {key: participants[key] for key in latest if key in participants}
        current = _participants(connection, list(known.values()))
        missing = []
        updates = _Updates(_participant.number)
        for key, item in latest.items():
            number = known.get(key)
            if number is None or number not in current:
                missing.append(key)
                continue
            changes = participant_update(current[number], item.state.personal)
            if changes:
                updates.add(number, {**changes, "modified_at": now})
        updates.run(connection)
        rows = []
        for key in missing:
            fields = latest[key].view.participant
            assert fields is not None  # the master's view always has one
            rows.append({"modified_at": now, **fields.as_row()})
        for key, row, number in zip(
            missing, rows, _insert_many(connection, admin.participants.c.number, rows), strict=True
        ):
            participants[key] = writes.participants[key] = number
            writes.participant_fields[number] = row


def _participants(connection: Connection, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The synced fields of these participant rows, by number (the rows that exist)."""
    return {
        row.number: row._asdict()
        for condition in one_of(connection, _participant.number, numbers)
        for row in connection.execute(
            select(
                *keyed(
                    _participant.number,
                    _participant.last_name,
                    _participant.first_name,
                    _participant.main_email,
                    _participant.main_phone,
                )
            ).where(condition)
        ).all()
    }


class _Updates:
    """Row updates of one table, run as one executemany per set of changed columns (a batch
    mostly changes the same columns of every row) instead of one statement a row."""

    def __init__(self, key: Column[Any]) -> None:
        self.key = key
        self.groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def add(self, key: Any, values: Mapping[str, Any]) -> None:
        names = tuple(sorted(values))
        self.groups.setdefault(names, []).append(
            {"b_key": key, **{f"b_{name}": values[name] for name in names}}
        )

    def run(self, connection: Connection) -> None:
        for names, rows in self.groups.items():
            statement = (
                update(self.key.table)
                .where(self.key == bindparam("b_key"))
                .values({name: bindparam(f"b_{name}") for name in names})
            )
            connection.execute(statement, rows)
        self.groups.clear()


def _forget_mappings_of(connection: Connection, column: Column[Any], ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        connection.execute(delete(column.table).where(column.in_(ids[start : start + 500])))


def _insert_many(connection: Connection, key: Column[Any], rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows and return their new keys in order: one statement where the backend
    can say which key belongs to which row."""
    if not rows:
        return []
    table = key.table
    if connection.dialect.insert_executemany_returning_sort_by_parameter_order:
        statement = insert(table).returning(key, sort_by_parameter_order=True)
        return [int(row[0]) for row in connection.execute(statement, rows)]
    return [_inserted_id(connection.execute(insert(table).values(**row))) for row in rows]


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every backend here returns the new id
        raise RuntimeError("the admin DB did not return the id of the new row")
    return int(key[0])
