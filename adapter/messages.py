"""The wire contract: CloudEvents 1.0 envelopes (structured JSON mode) around versioned facts.

These models are the source of the JSON Schema files in `schemas/`. They are past-tense facts:
`EnrollmentChanged` carries the full state of one enrollment (DESIGN decision 1), and
`CourseSyncRequested` asks every school of a course to send the requester its own
enrollments of the course (V1), on routes only the requester binds.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from adapter.domain import (
    CourseRef,
    EnrollmentKey,
    EnrollmentState,
    PersonalData,
    Status,
)
from adapter.domain.capacity import CourseSettings, WaitlistMode
from adapter.domain.enrollment import PERSONAL_FIELD_LIMITS
from adapter.domain.offers import CourseOffer

SCHEMA_VERSION: Final = 1
# Structured mode: one event a message. Batch mode (CloudEvents JSON batch format): a JSON
# array of enrollment events for one route, which the relay sends when many are due at once.
EVENT_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
# The largest message body a receiver reads (`[broker] max_message_bytes`); anything larger is
# dead-lettered unread. A batch of 1000 events, each at the longest its fields allow, fits.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
# AMQP headers of the relay's messages: the publishing school (so that its own messages, back
# through a binding it shares, are passed over unread) and how many events a message carries.
ORIGIN_HEADER: Final = "x-vhs-sync-origin"
EVENTS_HEADER: Final = "x-vhs-sync-events"
# Set on a dead letter put back into its school's queue (`vhs-sync dlq replay`).
REPLAYED_HEADER: Final = "x-vhs-sync-replayed"
ENROLLMENT_CHANGED: Final = "org.vhs-sync.enrollment.changed.v1"
COURSE_SYNC_REQUESTED: Final = "org.vhs-sync.course.sync-requested.v1"
COURSE_SETTINGS_CHANGED: Final = "org.vhs-sync.course.settings-changed.v1"
PLACE_OFFERED: Final = "org.vhs-sync.place.offered.v1"
PLACE_REQUESTED: Final = "org.vhs-sync.place.requested.v1"
PLACE_ANSWERED: Final = "org.vhs-sync.place.answered.v1"
DIGEST_REQUESTED: Final = "org.vhs-sync.course.digest-requested.v1"
DIGEST_ANSWERED: Final = "org.vhs-sync.course.digest-answered.v1"
# The most enrollments one digest answer lists (a course has far fewer).
MAX_DIGEST_ENTRIES: Final = 50_000
COURSE_OFFERED: Final = "org.vhs-sync.course.offered.v1"
COURSE_LEFT: Final = "org.vhs-sync.course.left.v1"

# Every integer on the wire fits the column it ends up in: participant numbers and counts the
# admin and state DBs' INTEGER, versions the state DB's BIGINT. A receiver bounds versions by
# its clock as well (`adapter.domain.enrollment.MAX_VERSION_AHEAD`).
MAX_INTEGER: Final = 2**31 - 1
MAX_BIGINT: Final = 2**63 - 1
ParticipantNumber = Annotated[int, Field(ge=1, le=MAX_INTEGER)]
Version = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
Count = Annotated[int, Field(ge=0, le=MAX_INTEGER)]

SchoolId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", strip_whitespace=False)
]
CourseNumber = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^\S+$")]
Text = Annotated[str, StringConstraints(max_length=200)]
Subject = Annotated[str, StringConstraints(max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CourseModel(_Model):
    """A shared course: the master school and the master's course number."""

    master_school: SchoolId
    number: CourseNumber


class ParticipantModel(_Model):
    """The personal fields that may travel, and only to the course's master (V5, V10)."""

    last_name: Annotated[
        str, StringConstraints(min_length=1, max_length=PERSONAL_FIELD_LIMITS["last_name"])
    ]
    first_name: Annotated[str, StringConstraints(max_length=PERSONAL_FIELD_LIMITS["first_name"])]
    main_email: (
        Annotated[str, StringConstraints(max_length=PERSONAL_FIELD_LIMITS["main_email"])] | None
    ) = None
    main_phone: (
        Annotated[str, StringConstraints(max_length=PERSONAL_FIELD_LIMITS["main_phone"])] | None
    ) = None


class EnrollmentData(_Model):
    """The state of one enrollment at its origin school, and its version."""

    origin_school: SchoolId
    participant_number: ParticipantNumber
    course: CourseModel
    status: Status
    registered_on: date | None = None
    waitlisted_since: datetime | None = None
    waitlisted_by_admin: bool = False
    version: Version
    participant: ParticipantModel | None = None


class CourseSyncData(_Model):
    """Which course to send again, and who asks."""

    requested_by: SchoolId
    course: CourseModel


class SettingsModel(_Model):
    """A course's capacity and waitlist settings (D1-D4); max_participants null: no maximum."""

    max_participants: Count | None
    min_participants: Count = 0
    desired_participants: Count | None = None
    waitlist_enabled: bool = True
    waitlist_max: Count | None = None
    mode: WaitlistMode = WaitlistMode.DOMINANT
    auto_advance: bool = False
    max_per_school: Count | None = None
    registration_open: bool = True


class CourseSettingsData(_Model):
    """The master's settings of a course, and their version."""

    course: CourseModel
    version: Version
    settings: SettingsModel


class PlaceOfferData(_Model):
    """A freed regular place, offered by the master to the school whose entry waits longest."""

    offer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    course: CourseModel
    origin_school: SchoolId
    participant_number: ParticipantNumber


class PlaceRequestData(_Model):
    """A subscriber's desk asks the master for a regular place for one participant."""

    course: CourseModel
    school: SchoolId
    participant_number: ParticipantNumber


class PlaceAnswerData(_Model):
    """The master's answer: the place, or the reason to wait."""

    course: CourseModel
    school: SchoolId
    participant_number: ParticipantNumber
    granted: bool
    reason: Annotated[str, StringConstraints(max_length=50)] | None = None


Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
StatusCode = Literal["A", "S", "W"]
# One enrollment of an origin school in a digest: participant number, version, status.
DigestEntry = tuple[ParticipantNumber, Version, StatusCode]


class DigestRequestData(_Model):
    """A school asks the members of a course what enrollments each has of its own, and says
    the digest of what it holds of each, so that a member whose digest matches need not list
    them."""

    course: CourseModel
    requested_by: SchoolId
    held: Annotated[dict[SchoolId, Digest], Field(max_length=1000)] = Field(default_factory=dict)


class DigestAnswerData(_Model):
    """A member's own enrollments of the course, as it last published them: their digest and
    count, and (unless the requester's digest matched) the entries."""

    course: CourseModel
    school: SchoolId
    requested_by: SchoolId
    count: Count
    digest: Digest
    entries: Annotated[list[DigestEntry], Field(max_length=MAX_DIGEST_ENTRIES)] | None = None
    # Whether the member has the course at all: a subscriber whose course names a master
    # number the master does not have learns it so.
    has_course: bool = True


Money = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]
Label = Annotated[str, StringConstraints(max_length=200)]


class OfferModel(_Model):
    """What a master shows of a shared course; null where its course row does not say."""

    title: Label
    fee: Money
    starts_on: date | None = None
    ends_on: date | None = None
    time_from: time | None = None
    time_to: time | None = None
    sessions: Count | None = None
    teaching_units: Annotated[Decimal, Field(ge=0, max_digits=6, decimal_places=2)] | None = None
    place: Label | None = None
    lecturer: Label | None = None
    max_participants: Count | None = None
    min_participants: Count | None = None
    registration_deadline: date | None = None
    cancelled: bool = False
    withdrawn: bool = False


class CourseOfferData(_Model):
    """The master's offer of a course, and its version."""

    course: CourseModel
    version: Version
    offer: OfferModel


class CourseLeftData(_Model):
    """Which school leaves which shared course."""

    course: CourseModel
    school: SchoolId


class _CloudEvent(_Model):
    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    source: Annotated[str, StringConstraints(pattern=r"^vhs-sync/[a-z0-9][a-z0-9-]{0,62}$")]
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: Literal[1] = SCHEMA_VERSION

    @property
    def source_school(self) -> str:
        return self.source.removeprefix("vhs-sync/")


class EnrollmentChanged(_CloudEvent):
    """Fact: an enrollment at its origin school now has this state."""

    type: Literal["org.vhs-sync.enrollment.changed.v1"] = ENROLLMENT_CHANGED
    subject: Subject
    data: EnrollmentData


class CourseSyncRequested(_CloudEvent):
    """Fact: a school joined a shared course (or lost its state, `vhs-sync resync`) and wants
    every enrollment; each school answers it alone (`routes.sync_answer`)."""

    type: Literal["org.vhs-sync.course.sync-requested.v1"] = COURSE_SYNC_REQUESTED
    subject: Subject
    data: CourseSyncData


class CourseSettingsChanged(_CloudEvent):
    """Fact: the master set these capacity and waitlist settings for its course."""

    type: Literal["org.vhs-sync.course.settings-changed.v1"] = COURSE_SETTINGS_CHANGED
    subject: Subject
    data: CourseSettingsData


class PlaceOffered(_CloudEvent):
    """Fact: automatic advance (D3) gave a freed place to this waiting entry; only the school
    that owns the entry moves it (V11)."""

    type: Literal["org.vhs-sync.place.offered.v1"] = PLACE_OFFERED
    subject: Subject
    data: PlaceOfferData


class PlaceRequested(_CloudEvent):
    """Fact: a subscriber's desk would give this participant a regular place, and asks the
    master, who alone sees every school's registrations at once, to allot it."""

    type: Literal["org.vhs-sync.place.requested.v1"] = PLACE_REQUESTED
    subject: Subject
    data: PlaceRequestData


class PlaceAnswered(_CloudEvent):
    """Fact: the master allotted the place, or did not (with the reason)."""

    type: Literal["org.vhs-sync.place.answered.v1"] = PLACE_ANSWERED
    subject: Subject
    data: PlaceAnswerData


class DigestRequested(_CloudEvent):
    """Fact: a school reconciles a course and asks each member for its own enrollments."""

    type: Literal["org.vhs-sync.course.digest-requested.v1"] = DIGEST_REQUESTED
    subject: Subject
    data: DigestRequestData


class DigestAnswered(_CloudEvent):
    """Fact: a member has these enrollments of its own in the course."""

    type: Literal["org.vhs-sync.course.digest-answered.v1"] = DIGEST_ANSWERED
    subject: Subject
    data: DigestAnswerData


class CourseOffered(_CloudEvent):
    """Fact: the master offers its shared course with these details (or, `cancelled`, has
    cancelled it, or, `withdrawn`, shares it no more); every school of the network hears it."""

    type: Literal["org.vhs-sync.course.offered.v1"] = COURSE_OFFERED
    subject: Subject
    data: CourseOfferData


class CourseLeft(_CloudEvent):
    """Fact: a subscriber left a shared course; its own enrollments stay its own."""

    type: Literal["org.vhs-sync.course.left.v1"] = COURSE_LEFT
    subject: Subject
    data: CourseLeftData


AnyEvent = (
    EnrollmentChanged
    | CourseSyncRequested
    | CourseSettingsChanged
    | PlaceOffered
    | PlaceRequested
    | PlaceAnswered
    | DigestRequested
    | DigestAnswered
    | CourseOffered
    | CourseLeft
)
Event = Annotated[AnyEvent, Field(discriminator="type")]


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
    return EnrollmentState(
        key,
        data.status,
        data.registered_on,
        personal,
        waitlisted_since=data.waitlisted_since,
        waitlisted_by_admin=data.waitlisted_by_admin,
    )


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
            waitlisted_since=state.waitlisted_since,
            waitlisted_by_admin=state.waitlisted_by_admin,
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


def sender(event: AnyEvent) -> str:
    """The school an event claims to come from."""
    match event:
        case EnrollmentChanged():
            return event.data.origin_school
        case CourseSyncRequested():
            return event.data.requested_by
        case CourseSettingsChanged() | PlaceOffered() | PlaceAnswered() | CourseOffered():
            return event.data.course.master_school
        case PlaceRequested() | CourseLeft():
            return event.data.school
        case DigestRequested():
            return event.data.requested_by
        case DigestAnswered():
            return event.data.school


def course_settings_changed(
    course: CourseRef, settings: CourseSettings, *, version: int, event_id: str, time: datetime
) -> CourseSettingsChanged:
    return CourseSettingsChanged(
        id=event_id,
        source=f"vhs-sync/{course.master_school}",
        time=time,
        subject=f"{course.master_school}/{course.number}",
        data=CourseSettingsData(
            course=course_model(course),
            version=version,
            settings=SettingsModel(
                max_participants=settings.max_participants,
                min_participants=settings.min_participants,
                desired_participants=settings.desired_participants,
                waitlist_enabled=settings.waitlist_enabled,
                waitlist_max=settings.waitlist_max,
                mode=settings.mode,
                auto_advance=settings.auto_advance,
                max_per_school=settings.max_per_school,
                registration_open=settings.registration_open,
            ),
        ),
    )


def settings_of(model: SettingsModel) -> CourseSettings:
    """The domain settings a message carries; `ValueError` when they contradict each other."""
    return CourseSettings(**model.model_dump())


def place_offered(
    key: EnrollmentKey, *, offer_id: str, event_id: str, time: datetime
) -> PlaceOffered:
    course = key.course
    return PlaceOffered(
        id=event_id,
        source=f"vhs-sync/{course.master_school}",
        time=time,
        subject=f"{course.master_school}/{course.number}/{key.participant_number}",
        data=PlaceOfferData(
            offer_id=offer_id,
            course=course_model(course),
            origin_school=key.origin_school,
            participant_number=key.participant_number,
        ),
    )


def place_requested(
    course: CourseRef, school: str, participant_number: int, *, event_id: str, time: datetime
) -> PlaceRequested:
    return PlaceRequested(
        id=event_id,
        source=f"vhs-sync/{school}",
        time=time,
        subject=f"{course.master_school}/{course.number}/{participant_number}",
        data=PlaceRequestData(
            course=course_model(course), school=school, participant_number=participant_number
        ),
    )


def place_answered(
    request: PlaceRequested, *, granted: bool, reason: str | None, event_id: str, time: datetime
) -> PlaceAnswered:
    return PlaceAnswered(
        id=event_id,
        source=f"vhs-sync/{request.data.course.master_school}",
        time=time,
        subject=request.subject,
        data=PlaceAnswerData(
            course=request.data.course,
            school=request.data.school,
            participant_number=request.data.participant_number,
            granted=granted,
            reason=reason,
        ),
    )


def course_offered(
    offer: CourseOffer, *, version: int, event_id: str, time: datetime
) -> CourseOffered:
    course = offer.course
    return CourseOffered(
        id=event_id,
        source=f"vhs-sync/{course.master_school}",
        time=time,
        subject=f"{course.master_school}/{course.number}",
        data=CourseOfferData(
            course=course_model(course),
            version=version,
            offer=OfferModel(
                title=offer.title[:200],
                fee=offer.fee,
                starts_on=offer.starts_on,
                ends_on=offer.ends_on,
                time_from=offer.time_from,
                time_to=offer.time_to,
                sessions=offer.sessions,
                teaching_units=offer.teaching_units,
                place=offer.place[:200] if offer.place else None,
                lecturer=offer.lecturer[:200] if offer.lecturer else None,
                max_participants=offer.max_participants,
                min_participants=offer.min_participants,
                registration_deadline=offer.registration_deadline,
                cancelled=offer.cancelled,
                withdrawn=offer.withdrawn,
            ),
        ),
    )


def offer_of(data: CourseOfferData) -> CourseOffer:
    """The domain offer a message carries."""
    return CourseOffer(course=course_ref(data.course), **dict(data.offer))


def course_left(course: CourseRef, school: str, *, event_id: str, time: datetime) -> CourseLeft:
    return CourseLeft(
        id=event_id,
        source=f"vhs-sync/{school}",
        time=time,
        subject=f"{course.master_school}/{course.number}",
        data=CourseLeftData(course=course_model(course), school=school),
    )


def digest_requested(
    course: CourseRef, *, requested_by: str, held: dict[str, str], event_id: str, time: datetime
) -> DigestRequested:
    return DigestRequested(
        id=event_id,
        source=f"vhs-sync/{requested_by}",
        time=time,
        subject=f"{course.master_school}/{course.number}",
        data=DigestRequestData(course=course_model(course), requested_by=requested_by, held=held),
    )


def digest_answered(
    request: DigestRequested,
    school: str,
    *,
    digest: str,
    entries: list[tuple[int, int, str]],
    has_course: bool = True,
    event_id: str,
    time: datetime,
) -> DigestAnswered:
    """The answer lists the entries only when the requester's digest of them differs."""
    matches = request.data.held.get(school) == digest
    return DigestAnswered(
        id=event_id,
        source=f"vhs-sync/{school}",
        time=time,
        subject=request.subject,
        data=DigestAnswerData(
            course=request.data.course,
            school=school,
            requested_by=request.data.requested_by,
            count=len(entries),
            digest=digest,
            entries=None if matches else entries,
            has_course=has_course,
        ),
    )
