"""The registration desk: the admin operations of the reference admin DB.

A school without KuferSQL (and the demo, the tests and the benchmark) makes its enrollments
through these functions; every write stamps `BEARBDATUM`, as the admin product does, so that
capture finds it.
"""

from adapter.desk.operations import (
    Person,
    add_course,
    delete_enrollment,
    enroll,
    set_status,
    update_person,
)

__all__ = ["Person", "add_course", "delete_enrollment", "enroll", "set_status", "update_person"]
