"""The registration desk: the admin operations of the reference admin DB.

A school without KuferSQL (and the demo, the tests and the benchmark) makes its enrollments
through these functions; every write stamps `BEARBDATUM`, as the admin product does, so that
capture finds it. `Desk` is the admin's desk proper: registration decisions across all
schools of a course (D1-D6), cancel, promote, to-waitlist and block.
"""

from adapter.desk.mail import Mailer, SmtpMailer
from adapter.desk.operations import (
    Person,
    add_course,
    delete_enrollment,
    enroll,
    set_status,
    update_person,
)
from adapter.desk.registration import (
    AlreadyEnrolledError,
    CourseSettingsError,
    Desk,
    DeskError,
    ForeignEnrollmentError,
    ForeignParticipantError,
    InvalidPersonError,
    InvalidStatusError,
    PromotionResult,
    RegistrationResult,
    UnknownCourseError,
    UnknownEnrollmentError,
    UnknownParticipantError,
)

__all__ = [
    "AlreadyEnrolledError",
    "CourseSettingsError",
    "Desk",
    "DeskError",
    "ForeignEnrollmentError",
    "ForeignParticipantError",
    "InvalidPersonError",
    "InvalidStatusError",
    "Mailer",
    "Person",
    "PromotionResult",
    "RegistrationResult",
    "SmtpMailer",
    "UnknownCourseError",
    "UnknownEnrollmentError",
    "UnknownParticipantError",
    "add_course",
    "delete_enrollment",
    "enroll",
    "set_status",
    "update_person",
]
