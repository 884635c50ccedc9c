"""Logs: JSON lines on stdout, one event name per kind of thing that happened.

No personal data in any log line, ever (DESIGN decision 6). A database's error message may
quote the row it refused ("Failing row contains (..., Greta, ..., greta@...)"), so an error is
described by `error_text`: class names, error codes and schema names, never a message text.
The libraries' own records (aio-pika, aiormq, SQLAlchemy, asyncio, warnings) go through the
same pipeline, their exceptions described the same way.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from structlog.typing import EventDict, Processor, WrappedLogger

# Library records below this level are not shown (they are mostly connection chatter).
LIBRARY_LEVEL = "WARNING"
_PACKAGE = str(Path(__file__).resolve().parents[1])


def error_text(error: BaseException) -> str:
    """What went wrong, without personal data: the exception's class, for a database error the
    driver's error class, SQLSTATE or error code and the table, column and constraint it names,
    and where in the adapter it was raised. Never the message text, never parameters."""
    parts = [type(error).__name__]
    details: list[str] = []
    if isinstance(error, DBAPIError) and error.orig is not None:
        details.append(_driver_error(error.orig))
    elif isinstance(error, OSError) and error.errno is not None:
        details.append(f"errno {error.errno}")
    elif error.__cause__ is not None:
        details.append(f"from {type(error.__cause__).__name__}")
    if details:
        parts.append(f"({', '.join(details)})")
    where = _where(error.__traceback__)
    if where:
        parts.append(f"at {where}")
    return " ".join(parts)


def _driver_error(orig: BaseException) -> str:
    kind = type(orig)
    text = f"{kind.__module__}.{kind.__qualname__}"
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if isinstance(sqlstate, str):
        text += f", sqlstate {sqlstate}"
    diag = getattr(orig, "diag", None)
    for name in ("table_name", "column_name", "constraint_name"):
        value = getattr(diag, name, None) if diag is not None else None
        if isinstance(value, str):
            text += f", {name.removesuffix('_name')} {value}"
    errorname = getattr(orig, "sqlite_errorname", None)  # sqlite3
    if isinstance(errorname, str):
        text += f", {errorname}"
    if orig.args and isinstance(orig.args[0], int):  # pymysql: (errno, message)
        text += f", error {orig.args[0]}"
    return text


def _where(trace: TracebackType | None) -> str:
    """The deepest frame in the adapter's own code: file, line and function."""
    found = ""
    for frame, line in traceback.walk_tb(trace):
        filename = frame.f_code.co_filename
        if filename.startswith(_PACKAGE):
            found = f"{Path(filename).name}:{line} in {frame.f_code.co_name}"
    return found


def safe_exceptions(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A processor: `exc_info` becomes `error` (`error_text`), never a rendered traceback,
    which would carry the exception's message."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(error, BaseException):
        event_dict.setdefault("error", error_text(error))
        # A library message that comes with an exception often quotes it on further lines
        # (asyncio's "Task exception was never retrieved\nfuture: <Task ... exception=...>").
        if not event_dict.get("_from_structlog", True):
            event_dict["event"] = str(event_dict.get("event", "")).split("\n", 1)[0]
    return event_dict


def configure(
    *, json: bool = True, level: str = "INFO", library_level: str = LIBRARY_LEVEL
) -> None:
    """Structlog renders JSON lines (or readable lines for a terminal) with time and level;
    library records from `library_level` up, and uncaught exceptions, go the same way."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        safe_exceptions,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    library = logging.getLevelName(library_level.upper())
    root.setLevel(library if isinstance(library, int) else logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    structlog.get_logger("adapter").critical("process.crashed", error=error_text(error))


def _log_uncaught_in_thread(args: Any) -> None:
    if args.exc_value is None:
        return
    structlog.get_logger("adapter").critical(
        "thread.crashed",
        thread=getattr(args.thread, "name", None),
        error=error_text(args.exc_value),
    )
