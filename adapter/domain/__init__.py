"""The pure core: enrollments, courses, occupancy and the rules that govern them. No I/O."""

from adapter.domain.enrollment import (
    CourseRef,
    EnrollmentKey,
    EnrollmentState,
    PersonalData,
    Role,
    Status,
    is_newer,
    next_version,
)

__all__ = [
    "CourseRef",
    "EnrollmentKey",
    "EnrollmentState",
    "PersonalData",
    "Role",
    "Status",
    "is_newer",
    "next_version",
]
