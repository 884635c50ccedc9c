"""The wire contract: CloudEvents 1.0 envelopes (structured JSON mode) around versioned facts.

These models are the source of the JSON Schema files in `schemas/`. They are past-tense facts:
`EnrollmentChanged` carries the full state of one enrollment (DESIGN decision 1), and
`CourseSyncRequested` asks every school of a course to send its enrollments again (V1).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from adapter.domain import (
    CourseRef,
    EnrollmentKey,
    EnrollmentState,
    PersonalData,
    Status,
)

SCHEMA_VERSION: Final = 1
ENROLLMENT_CHANGED: Final = "org.vhs-sync.enrollment.changed.v1"
COURSE_SYNC_REQUESTED: Final = "org.vhs-sync.course.sync-requested.v1"

SchoolId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", strip_whitespace=False)
]
CourseNumber = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^\S+$")]
Text = Annotated[str, StringConstraints(max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CourseModel(_Model):
    """A shared course: the master school and the master's course number."""

    master_school: SchoolId
    number: CourseNumber


class ParticipantModel(_Model):
    """The personal fields that may travel, and only to the course's master (V5, V10)."""

    last_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    first_name: Annotated[str, StringConstraints(max_length=100)]
    main_email: Annotated[str, StringConstraints(max_length=254)] | None = None
    main_phone: Annotated[str, StringConstraints(max_length=50)] | None = None


class EnrollmentData(_Model):
    """The state of one enrollment at its origin school, and its version."""

    origin_school: SchoolId
    participant_number: Annotated[int, Field(ge=1)]
    course: CourseModel
    status: Status
    registered_on: date | None = None
    version: Annotated[int, Field(ge=1)]
    participant: ParticipantModel | None = None


class CourseSyncData(_Model):
    """Which course to send again, and who asks."""

    requested_by: SchoolId
    course: CourseModel


class _CloudEvent(_Model):
    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    source: Annotated[str, StringConstraints(pattern=r"^vhs-sync/[a-z0-9][a-z0-9-]{0,62}$")]
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: Literal[1] = SCHEMA_VERSION

    @property
    def source_school(self) -> str:
        return self.source.removeprefix("vhs-sync/")


class EnrollmentChanged(_CloudEvent):
    """Fact: an enrollment at its origin school now has this state."""

    type: Literal["org.vhs-sync.enrollment.changed.v1"] = ENROLLMENT_CHANGED
    subject: str
    data: EnrollmentData


class CourseSyncRequested(_CloudEvent):
    """Fact: a school joined a shared course (or lost its state) and wants every enrollment."""

    type: Literal["org.vhs-sync.course.sync-requested.v1"] = COURSE_SYNC_REQUESTED
    subject: str
    data: CourseSyncData


Event = Annotated[EnrollmentChanged | CourseSyncRequested, Field(discriminator="type")]


class Envelope(BaseModel):
    """Parses any event the network carries, by its CloudEvents `type`."""

    event: Event


def course_ref(model: CourseModel) -> CourseRef:
    return CourseRef(model.master_school, model.number)


def course_model(ref: CourseRef) -> CourseModel:
    return CourseModel(master_school=ref.master_school, number=ref.number)


def enrollment_state(data: EnrollmentData) -> EnrollmentState:
    """The domain state an event describes."""
    personal = (
        PersonalData(
            last_name=data.participant.last_name,
            first_name=data.participant.first_name,
            main_email=data.participant.main_email,
            main_phone=data.participant.main_phone,
        )
        if data.participant
        else None
    )
    key = EnrollmentKey(data.origin_school, data.participant_number, course_ref(data.course))
    return EnrollmentState(key, data.status, data.registered_on, personal)


def enrollment_changed(
    state: EnrollmentState, *, version: int, event_id: str, time: datetime
) -> EnrollmentChanged:
    """The event for one enrollment state; personal data travels only if the state has it."""
    key = state.key
    participant = (
        ParticipantModel(
            last_name=state.personal.last_name,
            first_name=state.personal.first_name,
            main_email=state.personal.main_email,
            main_phone=state.personal.main_phone,
        )
        if state.personal
        else None
    )
    return EnrollmentChanged(
        id=event_id,
        source=f"vhs-sync/{key.origin_school}",
        time=time,
        subject=f"{key.course.master_school}/{key.course.number}/{key.participant_number}",
        data=EnrollmentData(
            origin_school=key.origin_school,
            participant_number=key.participant_number,
            course=course_model(key.course),
            status=state.status,
            registered_on=state.registered_on,
            version=version,
            participant=participant,
        ),
    )


def course_sync_requested(
    course: CourseRef, *, requested_by: str, event_id: str, time: datetime
) -> CourseSyncRequested:
    return CourseSyncRequested(
        id=event_id,
        source=f"vhs-sync/{requested_by}",
        time=time,
        subject=f"{course.master_school}/{course.number}",
        data=CourseSyncData(requested_by=requested_by, course=course_model(course)),
    )
