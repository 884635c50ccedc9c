"""The `vhs-sync` command: one command per job."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from adapter.config import ConfigError, Settings, load_settings
from adapter.store.db import DatabaseUrlError

if TYPE_CHECKING:
    from adapter.bootstrap import Engines
    from adapter.desk import Desk
    from adapter.ops.dlq import DeadLetter, Selection

# The settings the command read: errors name the broker and databases of this config.
_loaded: list[Settings] = []


class _Commands(TyperGroup):
    """Every command's errors that a setting or a service can cause end as one line on
    stderr and exit 2 (configuration) or 1 (a service), never as a traceback; so does an
    error nobody foresaw (named by class and place, `logs.error_text`: no message, which
    could quote a row)."""

    def invoke(self, ctx: Any) -> Any:
        import structlog

        from adapter.ops.errors import explain
        from adapter.ops.logs import error_text

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as error:
            if isinstance(error, typer.Exit | typer.Abort) or hasattr(error, "exit_code"):
                raise  # an exit, or a usage error: its own message (click's exceptions)
            explained = explain(error, _loaded[-1] if _loaded else None)
            if explained is not None:
                fail(explained.message, explained.code)
            if ctx.invoked_subcommand == "run":  # the daemon's log says it too, as JSON
                structlog.get_logger("adapter").critical("process.crashed", error=error_text(error))
            fail(f"unexpected {error_text(error)}: a bug, please report it", 1)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"vhs-sync {version('vhs-sync')}", highlight=False)
        raise typer.Exit()


app = typer.Typer(
    cls=_Commands,
    help="vhs-sync: enrollment sync between adult-education schools that share courses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """vhs-sync: enrollment sync between adult-education schools that share courses."""


admin_db_app = typer.Typer(
    help="The reference admin DB (a KuferSQL-like schema).", no_args_is_help=True
)
course_app = typer.Typer(help="Courses as this school sees them.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue of this school.", no_args_is_help=True)
app.add_typer(admin_db_app, name="admin-db")
app.add_typer(course_app, name="course")
app.add_typer(dlq_app, name="dlq")
broker_app = typer.Typer(help="Setting up the network's broker.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
desk_app = typer.Typer(
    help="The registration desk: register, cancel, promote, to-waitlist, block.",
    no_args_is_help=True,
)
app.add_typer(desk_app, name="desk")

# A pipe gets the listing's full width, not the 80 columns rich assumes without a terminal.
T = TypeVar("T")
console = Console() if sys.stdout.isatty() else Console(width=200)
errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the school's TOML file", envvar="VHS_SYNC_CONFIG")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def fail(message: str, code: int = 2) -> NoReturn:
    # The message is text, not markup: "install vhs-sync[mssql]" keeps its brackets.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def settings_from(path: Path) -> Settings:
    try:
        settings = load_settings(path)
    except ConfigError as error:
        fail(str(error))
    _loaded.append(settings)
    return settings


@app.command()
def run(
    config: ConfigOption,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="run without per-school broker users: origins are not checked"
        ),
    ] = False,
) -> None:
    """Run this school's adapter (capture, relay, consumer) until SIGTERM or Ctrl-C."""
    from adapter.bootstrap import Daemon
    from adapter.broker import BrokerSetupError
    from adapter.ops import logs
    from adapter.ops.health import ServeError
    from adapter.ops.heartbeat import SchoolHeldError

    settings = settings_from(config)
    settings.broker.insecure = settings.broker.insecure or insecure
    try:
        settings.check_broker_users()
    except ConfigError as error:
        fail(str(error))
    logs.configure(json=True, level=log_level)
    try:
        daemon = Daemon(settings)
    except DatabaseUrlError as error:
        fail(str(error))

    async def main() -> signal.Signals | None:
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        early: list[signal.Signals] = []

        def stopping(signum: signal.Signals) -> None:
            stop.set()
            if not daemon.ready.is_set():  # still starting (a broker that does not answer)
                early.append(signum)
                running.cancel()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping, signum)
        try:
            await running
        except asyncio.CancelledError:
            if not early:
                raise
            return early[0]
        return None

    try:
        early = asyncio.run(main())
    except (SchoolHeldError, ServeError) as error:
        fail(str(error), 1)
    except (DatabaseUrlError, BrokerSetupError) as error:
        fail(str(error))
    if early is not None:
        fail(f"stopped by {early.name} while starting", 128 + early.value)


@app.command()
def migrate(config: ConfigOption) -> None:
    """Create the adapter's state DB, or upgrade it to this release's schema."""
    from sqlalchemy.engine import make_url

    from adapter.store.db import make_engine, migrate_state

    settings = settings_from(config)
    migrated = migrate_state(make_engine(settings.state_db.url))
    where = make_url(settings.state_db.url).render_as_string(hide_password=True)
    console.print(f"state DB {where}: {migrated.describe()}", highlight=False)


@admin_db_app.command("create")
def admin_db_create(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="the school's TOML file")
    ] = None,
    url: Annotated[str | None, typer.Option(help="an SQLAlchemy URL instead of a config")] = None,
) -> None:
    """Create the reference admin DB schema (KURSE, TEILNEHM, BELEGUNG, ...), as the config
    maps it: for tests and sandboxes, never on a real KuferSQL."""
    from sqlalchemy.engine import make_url

    from adapter.store import admin
    from adapter.store.db import create_admin_schema, make_engine

    if (config is None) == (url is None):
        fail("give either --config or --url")
    if config is not None:
        admin.use(settings_from(config).admin_db.mapping())  # the tables as mapped
    target = url if url is not None else settings_from(config).admin_db.url  # type: ignore[arg-type]
    try:
        create_admin_schema(make_engine(target))
    except DatabaseUrlError as error:
        fail(str(error))
    shown = make_url(target).render_as_string(hide_password=True)
    console.print(f"admin DB ready: {shown}", highlight=False)


@course_app.command("show")
def course_show(course: str, config: ConfigOption, as_json: JsonOption = False) -> None:
    """The course as this school sees it: occupancy across all schools, then its rows."""
    from adapter.bootstrap import engines
    from adapter.mapping.listing import listing_as_dict
    from adapter.ops.courses import CourseNotFoundError, load_listing
    from adapter.ops.render import render_listing
    from adapter.store.db import migrate_state

    settings = settings_from(config)
    both = engines(settings)
    migrate_state(both.state)
    try:
        listing = load_listing(both.admin, both.state, course, settings.school.id)
    except CourseNotFoundError as error:
        fail(str(error), 1)
    if as_json:
        sys.stdout.write(json.dumps(listing_as_dict(listing), ensure_ascii=False, indent=2) + "\n")
    else:
        console.print(render_listing(listing, settings.school.name))


def _limit(text: str | None, option: str) -> int | None:
    """A count option: a number, or `none` for no limit."""
    if text is None or text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        fail(f"{option}: give a number or none, not {text!r}")
    if value < 0:
        fail(f"{option}: must not be negative")
    return value


@course_app.command("settings")
def course_settings_command(
    course: str,
    config: ConfigOption,
    master: Annotated[
        str | None,
        typer.Option("--master", help="the course's master school: shares the course (none: not)"),
    ] = None,
    desired: Annotated[str | None, typer.Option("--desired", metavar="N|none")] = None,
    waitlist: Annotated[
        bool | None, typer.Option("--waitlist/--no-waitlist", show_default=False)
    ] = None,
    waitlist_max: Annotated[str | None, typer.Option("--waitlist-max", metavar="N|none")] = None,
    waitlist_mode: Annotated[
        str | None,
        typer.Option(help="dominant, free_places_first, all_on_waitlist or manual"),
    ] = None,
    auto_advance: Annotated[
        bool | None, typer.Option("--auto-advance/--no-auto-advance", show_default=False)
    ] = None,
    max_per_school: Annotated[
        str | None, typer.Option("--max-per-school", metavar="N|none")
    ] = None,
    registration_open: Annotated[
        bool | None, typer.Option("--open/--closed", show_default=False)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a course's settings and master school, or change them (at the master; a
    subscriber sets only the master school). Kept in the state DB where the admin DB has no
    column for them."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from adapter.bootstrap import admin_clock_of, engines
    from adapter.ops.course_settings import (
        CourseNotFoundError,
        CourseSettingsError,
        change_settings,
        read_settings,
        where_kept,
    )
    from adapter.store.db import migrate_state

    settings = settings_from(config)
    changes: dict[str, Any] = {}
    if master is not None:
        known = {settings.school.id, *(peer.id for peer in settings.schools)}
        if master.lower() != "none" and master not in known:
            fail(
                f"--master: {master!r} is not a school of this network ({', '.join(sorted(known))})"
            )
        changes["master_school"] = None if master.lower() == "none" else master
    for key, text, option in (
        ("desired_participants", desired, "--desired"),
        ("waitlist_max", waitlist_max, "--waitlist-max"),
        ("max_per_school", max_per_school, "--max-per-school"),
    ):
        if text is not None:
            changes[key] = _limit(text, option)
    for key, value in (
        ("waitlist_enabled", waitlist),
        ("auto_advance", auto_advance),
        ("registration_open", registration_open),
        ("waitlist_mode", waitlist_mode),
    ):
        if value is not None:
            changes[key] = value
    try:
        both = engines(settings)
        migrate_state(both.state)
        if changes:
            shown = change_settings(
                both.admin,
                both.state,
                settings.school.id,
                course,
                changes,
                admin_clock_of(settings)(),
            )
        else:
            shown = read_settings(both.admin, both.state, course)
    except DatabaseUrlError as error:
        fail(str(error))
    except CourseSettingsError as error:
        fail(str(error))
    except CourseNotFoundError as error:
        fail(str(error), 1)
    except (OperationalError, ProgrammingError) as error:
        fail(f"the admin DB cannot do this: {type(error.orig).__name__}", 1)
    if as_json:
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
        return
    kept_in = where_kept()
    table = Table("setting", "value", "kept in", title=f"course {course}")
    for key, value in shown.items():
        table.add_row(key, "-" if value is None else str(value), kept_in[key])
    console.print(table)


# -- course offers (issue 9) ------------------------------------------------------------------


def _log_warnings_to_stderr() -> None:
    """What a command prints goes to stdout; its log only warns, on stderr."""
    import logging

    import structlog

    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


@app.command("offers")
def offers_list(config: ConfigOption, as_json: JsonOption = False) -> None:
    """The course offers this school's adapter has heard, its own included, and as which
    local course it has each."""
    from adapter.bootstrap import engines
    from adapter.mapping.offers import offer_as_dict
    from adapter.ops.offers import known_offers
    from adapter.ops.render import render_offers
    from adapter.store.db import migrate_state

    settings = settings_from(config)
    both = engines(settings)
    migrate_state(both.state)
    known = known_offers(both.admin, both.state)
    if as_json:
        body = [
            {**offer_as_dict(item.offer), "local_course": item.local_course, "left": item.left}
            for item in known
        ]
        sys.stdout.write(json.dumps(body, ensure_ascii=False, indent=2) + "\n")
        return
    names = {peer.id: peer.name for peer in settings.schools}
    names[settings.school.id] = settings.school.name
    console.print(render_offers(known, names))
    console.print(f"{len(known)} offer(s)", highlight=False)


@app.command()
def subscribe(
    master: Annotated[str, typer.Argument(help="the master school's id, e.g. vhs-sr")],
    course: Annotated[str, typer.Argument(help="the master's course number")],
    config: ConfigOption,
    local: Annotated[str, typer.Option("--as", help="this school's number for the course")],
    print_only: Annotated[
        bool,
        typer.Option("--print", help="print the course for staff to create; write nothing"),
    ] = False,
) -> None:
    """Subscribe to a master's offered course: create the local course from the offer (or
    print it); the daemon then joins it and the enrollments arrive (V1)."""
    from adapter.bootstrap import admin_clock_of, engines
    from adapter.domain import CourseRef
    from adapter.ops.offers import OfferError, column_names, subscribe, subscription
    from adapter.store import admin
    from adapter.store.db import migrate_state

    _log_warnings_to_stderr()
    settings = settings_from(config)
    both = engines(settings)
    migrate_state(both.state)
    ref = CourseRef(master, course)
    write = settings.offers.create_courses and not print_only
    try:
        if write:
            stamp = admin_clock_of(settings)()
            values = subscribe(both.admin, both.state, settings.school.id, ref, local, stamp)
        else:
            values = subscription(both.admin, both.state, settings.school.id, ref, local)
    except OfferError as error:
        fail(str(error), 1)
    if write:
        console.print(
            f"course {local} created from {master}'s course {course}; the adapter joins it",
            highlight=False,
        )
        return
    console.print(
        f"create this course in the admin product (table {admin.courses.name}); the adapter "
        "joins it once it is there:",
        highlight=False,
    )
    for name, value in column_names(values).items():
        shown = "" if value is None else value
        console.print(f"  {name:12} {shown}", highlight=False, markup=False)


@app.command()
def unsubscribe(
    course: Annotated[str, typer.Argument(help="this school's number of the shared course")],
    config: ConfigOption,
) -> None:
    """Leave a shared course: this school's own enrollments stay; the other schools' rows no
    longer count here (status S, never deleted); the master and the others hear of it."""
    from adapter.bootstrap import admin_clock_of, engines, utcnow
    from adapter.ops.offers import OfferError, unbind_course, unsubscribe
    from adapter.store.db import migrate_state

    _log_warnings_to_stderr()
    settings = settings_from(config)
    both = engines(settings)
    migrate_state(both.state)
    try:
        stamp = admin_clock_of(settings)()
        ref = unsubscribe(both.admin, both.state, settings.school.id, course, utcnow(), stamp)
    except OfferError as error:
        fail(str(error), 1)
    console.print(
        f"left course {ref.number} of {ref.master_school}; the adapter tells the network",
        highlight=False,
    )
    try:
        asyncio.run(unbind_course(settings, ref))
    except Exception as error:  # the daemon unbinds at its next look at the courses
        console.print(
            f"note: the queue's bindings stay until the adapter runs ({type(error).__name__})",
            highlight=False,
        )


@app.command("reconcile")
def reconcile_command(
    config: ConfigOption,
    course: Annotated[
        str | None, typer.Argument(help="the local course number; every shared course if none")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="ask the members to send a drifted course again")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare what this school holds of each origin school with what the origin says it has:
    missing, stale and extra enrollments, and local actions that break sync. Exits 1 on drift."""
    from aiormq.exceptions import AMQPError

    from adapter.bootstrap import utcnow
    from adapter.ops.reconcile import reconcile, report_as_dict

    _warnings_to_stderr()
    settings = settings_from(config)
    both = _reachable_databases(settings)
    try:
        reports = asyncio.run(
            reconcile(
                settings,
                both.admin,
                both.state,
                local_number=course,
                repair=repair,
                wait=settings.reconcile.wait,
                now=utcnow(),
            )
        )
    except LookupError as error:
        fail(str(error).strip("'\""), 1)
    except (ConnectionError, OSError) as error:
        said = str(error) or f"no answer within {settings.reconcile.wait} s"  # a timeout
        fail(f"cannot reach the broker at {settings.broker.url.split('@')[-1]}: {said}", 1)
    except AMQPError as error:  # no such network, or a binding the school's user may not make
        reply = error.args[0] if error.args else error
        fail(f"the broker refused: {getattr(reply, 'reply_text', reply)}", 1)
    if as_json:
        sys.stdout.write(json.dumps([report_as_dict(r) for r in reports], indent=2) + "\n")
    else:
        for report in reports:
            console.print(_reconcile_text(report), highlight=False, markup=False)
    if any(report.drifted for report in reports):
        raise typer.Exit(1)


def _reachable_databases(settings: Settings) -> Engines:
    """The school's engines, its state DB migrated and its admin DB reached: a URL that cannot
    be used or a database that is down is one line (exit 2 or 1), not a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from adapter.bootstrap import engines
    from adapter.store.db import migrate_state

    try:
        both = engines(settings)
    except DatabaseUrlError as error:
        fail(str(error))
    for name, engine, url in (
        ("state DB", both.state, settings.state_db.url),
        ("admin DB", both.admin, settings.admin_db.url),
    ):
        try:
            if engine is both.state:
                migrate_state(engine)
            else:
                engine.connect().close()
        except OperationalError as error:
            # Connecting and creating tables touch no rows: the driver's first line is safe.
            where = make_url(url).render_as_string(hide_password=True)
            said = str(error.orig).strip().splitlines()[:1] or [type(error.orig).__name__]
            fail(f"cannot reach the {name} at {where}: {said[0]}", 1)
    return both


def _reconcile_text(report: Any) -> str:
    name = report.local_number or f"{report.master}/{report.course} (not found here)"
    lines = [f"course {name}: " + ("drift" if report.drifted else "in sync")]
    for origin in report.origins:
        if origin.unanswered:
            lines.append(f"  {origin.origin}: no answer (holding {origin.held})")
            continue
        parts = [
            f"{kind} {', '.join(map(str, numbers))}"
            for kind in ("missing", "stale", "extra", "ahead")
            if (numbers := getattr(origin, kind))
        ]
        told = "?" if origin.told is None else origin.told
        lines.append(
            f"  {origin.origin}: holding {origin.held} of {told}"
            + (f"; participants {'; '.join(parts)}" if parts else "")
        )
    lines.extend(
        f"  local {issue.kind}: enrollment {issue.enrollment_id}: {issue.detail}"
        if issue.enrollment_id is not None
        else f"  local {issue.kind}: {issue.detail}"
        for issue in report.local
    )
    if report.repair_requested:
        lines.append(f"  repair: asked {', '.join(report.repair_requested)} to send it again")
    return "\n".join(lines)


@app.command()
def settlement(
    course: str,
    config: ConfigOption,
    rate: Annotated[
        list[str] | None,
        typer.Option("--rate", help="SCHOOL=AMOUNT: the rate per regular place, e.g. vhs-ka=18,00"),
    ] = None,
    set_balances: Annotated[
        bool,
        typer.Option("--set", help="write the rates as open balances of the company bookings"),
    ] = False,
    school: Annotated[
        list[str] | None, typer.Option("--school", help="with --set: only this school")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """At course end, the master bills each subscriber school (V12): per school its regular
    places (A) and the amount; `--set` writes the rate as open balance of each of the school's
    company bookings, once per school."""
    from decimal import Decimal

    from adapter.bootstrap import admin_clock_of, utcnow
    from adapter.domain.settlement import InvalidRateError, parse_rate
    from adapter.ops import settlement as settling
    from adapter.ops.render import money

    if school and not set_balances:
        fail("--school chooses the schools that --set settles: add --set")
    settings = settings_from(config)
    rates = {}
    for text in rate or []:
        peer, _, amount = text.partition("=")
        if not peer or not amount:
            fail(f"--rate takes SCHOOL=AMOUNT, e.g. vhs-ka=18,00, not {text!r}")
        try:
            rates[peer.strip()] = parse_rate(amount)
        except InvalidRateError as error:
            fail(f"--rate {peer}: {error}")
    both = _reachable_databases(settings)
    names = {peer.id: peer.name for peer in settings.schools}
    me = settings.school.id
    try:
        current = settling.load_settlement(both.admin, both.state, course, me, names)
        if rates:
            settling.enter_rates(both.state, current, me, rates)
            current = settling.load_settlement(both.admin, both.state, course, me, names)
        if set_balances:
            # The admin DB's wall time, in `[admin_db] timezone` (its course end date too).
            admin_now = admin_clock_of(settings)()
            done = settling.set_balances(
                both.admin,
                both.state,
                current,
                me,
                school or None,
                today=admin_now.date(),
                now=utcnow(),
                admin_now=admin_now,
            )
            current = settling.load_settlement(both.admin, both.state, course, me, names)
            if not as_json:
                for entry in done:
                    console.print(
                        f"set: {entry.name} ({entry.school}), {entry.participants} booking(s) "
                        f"of {money(entry.rate or Decimal(0))}",
                        highlight=False,
                        markup=False,
                    )
    except settling.SettlementError as error:
        fail(str(error), 1)
    if as_json:
        sys.stdout.write(json.dumps(_settlement_as_dict(current), indent=2) + "\n")
        return
    for entry in current.schools:
        amount = "-" if entry.amount is None else money(entry.amount)
        rate_text = "no rate" if entry.rate is None else f"rate {money(entry.rate)}"
        when = f"set {entry.set_at:%Y-%m-%d %H:%M}" if entry.set_at else "not set"
        console.print(
            f"{entry.name} ({entry.school}): {entry.participants} participant(s) (A), "
            f"{rate_text}, amount {amount}, {when}",
            highlight=False,
            markup=False,
        )
        for booking in entry.bookings:
            console.print(
                f"  enrollment {booking.enrollment_id}: {booking.name} "
                f"(participant {booking.participant_number}), Saldo {money(booking.balance)}",
                highlight=False,
                markup=False,
            )
    console.print(f"total {money(current.total)}", highlight=False)


def _settlement_as_dict(settlement: Any) -> dict[str, Any]:
    return {
        "course": settlement.course,
        "ends_on": settlement.ends_on.isoformat() if settlement.ends_on else None,
        "total": str(settlement.total),
        "schools": [
            {
                "school": entry.school,
                "name": entry.name,
                "participants": entry.participants,
                "rate": None if entry.rate is None else str(entry.rate),
                "amount": None if entry.amount is None else str(entry.amount),
                "set_at": entry.set_at.isoformat() if entry.set_at else None,
                "set_count": entry.set_count,
                "bookings": [
                    {
                        "enrollment_id": booking.enrollment_id,
                        "participant_number": booking.participant_number,
                        "name": booking.name,
                        "balance": str(booking.balance),
                    }
                    for booking in entry.bookings
                ],
            }
            for entry in settlement.schools
        ],
    }


@app.command()
def resync(course: str, config: ConfigOption) -> None:
    """Ask every school of a shared course to send this school its own enrollments of it
    again: what was lost or changed here is booked again. The running adapter sends the
    request (or, when stopped, as it starts); the other schools get nothing again."""
    from adapter.bootstrap import engines, utcnow
    from adapter.ops.resync import NotSharedError, request_resync
    from adapter.store.db import migrate_state

    settings = settings_from(config)
    try:
        both = engines(settings)
        migrate_state(both.state)
        shared = request_resync(both.admin, both.state, settings.school.id, course, utcnow())
    except DatabaseUrlError as error:
        fail(str(error))
    except NotSharedError as error:
        fail(str(error))
    console.print(
        f"asked every school of course {shared.number} (master {shared.master_school}) to "
        "send its enrollments again; the adapter sends the request",
        highlight=False,
    )


@app.command()
def status(config: ConfigOption, as_json: JsonOption = False) -> None:
    """The daemon, its databases, outbox, queue and dead letters of this school; exits 1
    when it is not healthy, with each problem under `problems`."""
    from adapter.bootstrap import engines, utcnow
    from adapter.ops.status import read_status

    settings = settings_from(config)
    try:
        both = engines(settings)
    except DatabaseUrlError as error:
        fail(str(error))
    current = asyncio.run(read_status(settings, both.state, utcnow(), admin_engine=both.admin))
    if as_json:
        sys.stdout.write(json.dumps(current.as_dict(), indent=2) + "\n")
    else:
        for name, value in current.as_dict().items():
            console.print(f"{name:28} {value}", highlight=False, markup=False)
    if not current.healthy:
        raise typer.Exit(1)


# -- the dead-letter queue (issue 8) ---------------------------------------------------------

ReasonOption = Annotated[
    list[str] | None,
    typer.Option("--reason", help="letters rejected for this reason (repeatable)"),
]
OriginOption = Annotated[
    list[str] | None,
    typer.Option("--origin", help="letters from this school, as their routing key names it"),
]
CourseOption = Annotated[
    list[str] | None,
    typer.Option("--course", help="letters about this course: NUMBER or MASTER/NUMBER"),
]
IdOption = Annotated[
    list[str] | None, typer.Option("--id", help="the letter with this message id (repeatable)")
]
RevealOption = Annotated[
    bool, typer.Option("--reveal", help="show personal data instead of masking it (J***)")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="only say which letters it would take")
]


def _selection(
    reason: list[str] | None,
    origin: list[str] | None,
    course: list[str] | None,
    message_id: list[str] | None,
) -> Selection:
    from adapter.ops.dlq import Selection

    return Selection.of(
        reasons=reason or (), origins=origin or (), courses=course or (), ids=message_id or ()
    )


def _dlq_call(config: Path, call: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """A DLQ command against the broker; what the broker refuses becomes one line (and the
    client library's own report of a failed connection is not printed before it)."""
    import logging

    from aiormq.exceptions import AMQPError

    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    try:
        return _broker_call(config, call)
    except AMQPError as error:
        reply = error.args[0] if error.args else error
        fail(escape(f"the broker refused: {getattr(reply, 'reply_text', reply)}"), 1)


def _letters_table(letters: list[DeadLetter]) -> Table:
    from adapter.ops.dlq import printable

    table = Table("#", "message id", "reason", "origin", "course", "rejected at", "detail")
    for letter in letters:
        table.add_row(
            *(
                Text(printable(value))
                for value in (
                    str(letter.position),
                    letter.message_id or "",
                    letter.reason,
                    letter.origin or "-",
                    letter.course_name or "-",
                    letter.rejected_at,
                    letter.detail,
                )
            )
        )
    return table


@dlq_app.command("list")
def dlq_list(
    config: ConfigOption,
    reason: ReasonOption = None,
    origin: OriginOption = None,
    course: CourseOption = None,
    message_id: IdOption = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="count by reason, origin or course (repeatable)"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="letters a page shows")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="letters to skip first")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The dead letters of this school, with the reason each was rejected; a page at a time,
    or counted by group. Looking takes nothing away and wears no letter out."""
    from adapter.ops.dlq import GROUPS, groups, list_dead_letters, page, printable

    unknown = [name for name in group_by or () if name not in GROUPS]
    if unknown:
        fail(f"--group-by takes {', '.join(GROUPS)}, not {', '.join(unknown)}")
    if limit < 1 or offset < 0:
        fail("--limit must be 1 or more and --offset 0 or more")
    selection = _selection(reason, origin, course, message_id)
    everything = _dlq_call(config, list_dead_letters)
    letters = [letter for letter in everything if selection.matches(letter)]
    counted = {"total": len(everything), "matching": len(letters)}
    if group_by:
        counts = groups(letters, group_by)
        if as_json:
            rows = [{**dict(zip(group_by, key, strict=True)), "count": n} for key, n in counts]
            sys.stdout.write(json.dumps({**counted, "groups": rows}, indent=2) + "\n")
            return
        table = Table(*group_by, "letters")
        for key, n in counts:
            table.add_row(*(Text(printable(value)) for value in key), str(n))
        console.print(table)
        console.print(f"{len(letters)} dead letter(s) of {len(everything)}", highlight=False)
        return
    shown = page(letters, offset, limit)
    if as_json:
        body = {
            **counted,
            "offset": offset,
            "limit": limit,
            "letters": [letter.summary() for letter in shown],
        }
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return
    console.print(_letters_table(shown))
    matching = "" if selection.everything else f" of {len(everything)} match"
    line = f"{len(letters)} dead letter(s){matching}"
    if shown:
        line += f"; shown {offset + 1}-{offset + len(shown)}"
    if offset + len(shown) < len(letters):
        line += f"; next page: --offset {offset + len(shown)}"
    console.print(line, highlight=False)


@dlq_app.command("show")
def dlq_show(
    message_id: Annotated[str, typer.Argument(help="the letter's message id")],
    config: ConfigOption,
    reveal: RevealOption = False,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: why it was rejected, its headers and its body, pretty-printed."""
    from adapter.ops.dlq import list_dead_letters, printable, record, render

    everything = _dlq_call(config, list_dead_letters)
    found = [letter for letter in everything if letter.message_id == message_id]
    if not found:
        fail(escape(f"no dead letter with message id {printable(message_id)!r}"), 1)
    if as_json:
        records = [record(letter, reveal=reveal) for letter in found]
        sys.stdout.write(json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    for letter in found:
        sys.stdout.write(render(letter, reveal=reveal, total=len(everything)) + "\n")


def _chosen(
    every: bool, selection: Selection, what: str, *, everything_by_default: bool = False
) -> None:
    """`--all` or a selection: one of them, not both (or neither, where that means all)."""
    if every and not selection.everything:
        fail(f"give --all or a selection to {what}, not both")
    if not every and selection.everything and not everything_by_default:
        fail(f"give --all or a selection (--id, --reason, --origin, --course) to {what}")


def _dry_run(config: Path, selection: Selection, verb: str) -> None:
    from adapter.ops.dlq import list_dead_letters

    letters = _dlq_call(config, lambda settings: list_dead_letters(settings, selection))
    console.print(_letters_table(letters))
    console.print(f"would {verb} {len(letters)} message(s) (dry run)", highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOption,
    message_id: IdOption = None,
    replay_all: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
    reason: ReasonOption = None,
    origin: OriginOption = None,
    course: CourseOption = None,
    dry_run: DryRunOption = False,
    rate: Annotated[
        float | None, typer.Option("--rate", help="at most this many messages a second")
    ] = None,
) -> None:
    """Put dead letters back into this school's queue, once their cause is fixed; the others
    stay in the DLQ in their order."""
    from adapter.ops.dlq import replay

    selection = _selection(reason, origin, course, message_id)
    _chosen(replay_all, selection, "replay")
    if rate is not None and rate <= 0:
        fail("--rate must be more than 0 messages a second")
    if dry_run:
        _dry_run(config, selection, "replay")
        return
    replayed = _dlq_call(config, lambda settings: replay(settings, selection=selection, rate=rate))
    console.print(f"replayed {len(replayed)} message(s)")


@dlq_app.command("purge")
def dlq_purge(
    config: ConfigOption,
    yes: Annotated[bool, typer.Option("--yes", help="really drop these dead letters")] = False,
    purge_all: Annotated[
        bool, typer.Option("--all", help="every dead letter (also without a selection)")
    ] = False,
    reason: ReasonOption = None,
    origin: OriginOption = None,
    course: CourseOption = None,
    message_id: IdOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Drop dead letters of this school for good: those selected, or without a selection all."""
    from adapter.ops.dlq import purge

    selection = _selection(reason, origin, course, message_id)
    _chosen(purge_all, selection, "purge", everything_by_default=True)
    if dry_run:
        _dry_run(config, selection, "purge")
        return
    if not yes:
        fail("purging drops messages for good: add --yes")
    purged = _dlq_call(config, lambda settings: purge(settings, selection))
    console.print(f"purged {purged} message(s)")


@dlq_app.command("export")
def dlq_export(
    target: Annotated[str, typer.Argument(help="the file to write, or - for standard output")],
    config: ConfigOption,
    reason: ReasonOption = None,
    origin: OriginOption = None,
    course: CourseOption = None,
    message_id: IdOption = None,
    reveal: RevealOption = False,
) -> None:
    """Write dead letters as JSON lines (summary, headers, body), leaving them in the DLQ."""
    import os

    from adapter.ops.dlq import list_dead_letters, record

    selection = _selection(reason, origin, course, message_id)
    letters = _dlq_call(config, lambda settings: list_dead_letters(settings, selection))
    lines = "".join(
        json.dumps(record(letter, reveal=reveal), ensure_ascii=False, default=str) + "\n"
        for letter in letters
    )
    if target == "-":
        sys.stdout.write(lines)
        errors.print(f"exported {len(letters)} dead letter(s)", highlight=False)
        return
    try:  # only its owner may read it: revealed, it holds personal data
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a file that was there keeps its mode otherwise
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(lines)
    except OSError as error:
        fail(escape(f"cannot write {target}: {error.strerror}"), 1)
    console.print(f"exported {len(letters)} dead letter(s) to {target}", highlight=False)


@broker_app.command("provision")
def broker_provision(
    config: ConfigOption,
    out: Annotated[Path, typer.Option("--out", help="the definitions file to write")],
    secrets_dir: Annotated[
        Path | None,
        typer.Option(help="one password file per school (default: `secrets` next to --out)"),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="load it with `rabbitmqctl import_definitions`")
    ] = False,
    node: Annotated[
        str | None,
        typer.Option(help="with --apply: the RabbitMQ node to load it into (`rabbitmqctl -n`)"),
    ] = None,
) -> None:
    """Write the network's RabbitMQ definitions: a user per school with least privilege."""
    from adapter.ops import provision

    if node is not None and not apply:
        fail("--node names the node that --apply loads the definitions into: add --apply")
    settings = settings_from(config)
    folder = secrets_dir if secrets_dir is not None else out.parent / "secrets"
    try:
        users = provision.provision(settings, out, folder)
        if apply:
            provision.apply(out, node)
    except provision.ProvisionError as error:
        fail(str(error))
    schools = ", ".join(f"{user.school} as {user.user}" for user in users)
    console.print(f"wrote {out}: {schools}; passwords in {folder}", highlight=False)
    if apply:
        from adapter.broker import vhost

        where = f"node {node}" if node is not None else "the broker"
        console.print(f"loaded into {where}, vhost {vhost(settings.broker.url)!r}")


def _broker_call(config: Path, call: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = settings_from(config)
    try:
        return asyncio.run(call(settings))
    except (ConnectionError, OSError) as error:
        fail(f"cannot reach the broker at {settings.broker.url.split('@')[-1]}: {error}", 1)


@app.command()
def demo(
    broker: Annotated[
        str, typer.Option(help="the RabbitMQ to use", envvar="VHS_SYNC_BROKER__URL")
    ] = ("amqp://guest:guest@127.0.0.1:5672/"),
    workdir: Annotated[Path | None, typer.Option(help="keep the demo's databases here")] = None,
) -> None:
    """Three schools share one course on SQLite admin DBs and the local RabbitMQ."""
    from adapter.ops.demo import run_demo

    try:
        asyncio.run(run_demo(broker, workdir, console))
    except (ConnectionError, OSError) as error:
        fail(f"cannot reach RabbitMQ at {broker.split('@')[-1]}: {error}", 1)


# -- the registration desk (issue 3) ---------------------------------------------------------

_WAIT_REASONS = {
    "full": "no free regular place",
    "waitlist_first": "others are waiting, new registrations queue behind them",
    "all_on_waitlist": "in this course every registration goes to the waitlist",
    "school_limit": "this school has reached its maximum of participants in the course",
    "blocked": "the person is blocked and always goes to the waitlist",
}
_REFUSALS = {
    "waitlist_full": "the course is full and its waitlist is full or not kept",
    "no_privacy_consent": "the privacy notice was not acknowledged (--consent)",
    "course_closed": "registration for this course is not open",
}


def _warnings_to_stderr() -> None:
    """A command's answer goes to stdout (perhaps as JSON); its log only warns, on stderr."""
    import logging

    import structlog

    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _desk(config: Path) -> Desk:
    """The desk of the school in this config, with its mailer when `[smtp]` is set."""
    from adapter.bootstrap import admin_clock_of, engines
    from adapter.desk import Desk, SmtpMailer
    from adapter.desk.places import PlaceClient
    from adapter.store.db import migrate_state

    _warnings_to_stderr()
    settings = settings_from(config)
    try:
        both = engines(settings)
        migrate_state(both.state)
    except DatabaseUrlError as error:
        fail(str(error))
    mailer = SmtpMailer.from_settings(settings.smtp) if settings.smtp is not None else None
    places = PlaceClient(settings.broker.url, settings.broker.network, settings.school.id)
    return Desk(
        both.admin,
        both.state,
        settings.school.id,
        mailer=mailer,
        places=places,
        clock=admin_clock_of(settings),  # stamps in the admin DB's zone
    )


def _desk_call(call: Callable[[], T]) -> T:
    """Run a desk operation; refusals and database problems become readable messages."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from adapter.desk import DeskError

    try:
        return call()
    except DeskError as error:
        fail(str(error), 1)
    except (OperationalError, ProgrammingError) as error:
        fail(f"the admin DB cannot do this: {error.orig}", 1)


@desk_app.command("register")
def desk_register(
    course: str,
    config: ConfigOption,
    last_name: Annotated[str, typer.Option("--last-name", help="the person's last name")],
    first_name: Annotated[str, typer.Option("--first-name", help="the person's first name")],
    birthday: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD; with --email it recognises a returning person")
    ] = None,
    email: Annotated[str | None, typer.Option(help="the main email")] = None,
    phone: Annotated[str | None, typer.Option(help="the main phone")] = None,
    consent: Annotated[
        bool,
        typer.Option(
            "--consent/--no-consent", help="the person acknowledged the privacy notice (D6)"
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register a person for a course: a regular place (A), the waitlist (W) or a refusal.

    Exits 1 when the registration is refused."""
    from datetime import date

    from adapter.desk import Person
    from adapter.domain import Refused, Registered

    try:
        born = date.fromisoformat(birthday) if birthday else None
    except ValueError:
        fail(f"--birthday must be a date like 1990-05-01, not {birthday!r}")
    person = Person(last_name, first_name, birthday=born, main_email=email, main_phone=phone)
    desk = _desk(config)
    result = _desk_call(lambda: desk.register(course, person, privacy_consent=consent))
    decision = result.decision
    if isinstance(decision, Refused):
        status, reason = "refused", decision.reason.value
    elif isinstance(decision, Registered):
        status, reason = decision.status.value, None
    else:
        status, reason = decision.status.value, decision.reason.value
    if as_json:
        body = {
            "decision": status,
            "reason": reason,
            "participant_number": result.participant_number,
            "enrollment_id": result.enrollment_id,
            "returning": result.returning,
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        if isinstance(decision, Refused):
            raise typer.Exit(1)
        return
    if isinstance(decision, Refused):
        fail(f"refused ({reason}): {_REFUSALS[decision.reason.value]}", 1)
    who = f"participant {result.participant_number}" + (" (returning)" if result.returning else "")
    if reason is None:
        line = f"A: regular place; {who}, enrollment {result.enrollment_id}"
    else:
        line = (
            f"W: waitlist ({reason}: {_WAIT_REASONS[reason]}); "
            f"{who}, enrollment {result.enrollment_id}"
        )
    console.print(line, highlight=False, markup=False)


EnrollmentArgument = Annotated[int, typer.Argument(help="the enrollment's id (BELEGUNG.ID)")]


@desk_app.command("cancel")
def desk_cancel(enrollment_id: EnrollmentArgument, config: ConfigOption) -> None:
    """Cancel an own enrollment (status S; enrollments are never deleted)."""
    desk = _desk(config)
    _desk_call(lambda: desk.cancel(enrollment_id))
    console.print(f"enrollment {enrollment_id} cancelled (S)", highlight=False)


@desk_app.command("promote")
def desk_promote(enrollment_id: EnrollmentArgument, config: ConfigOption) -> None:
    """Set a waitlist place to a regular place (W to A), even past max; mails the person."""
    desk = _desk(config)
    result = _desk_call(lambda: desk.promote(enrollment_id))
    console.print(f"enrollment {enrollment_id} promoted to a regular place (A)", highlight=False)
    if result.exceeds_max:
        console.print("note: the course is now over its maximum", highlight=False)
    if result.mailed:
        console.print("the person was told by mail", highlight=False)
    elif desk.mailer is not None:
        console.print("warning: no mail was sent (no email, or the mail server failed)")


@desk_app.command("to-waitlist")
def desk_to_waitlist(enrollment_id: EnrollmentArgument, config: ConfigOption) -> None:
    """Move an own regular place to the waitlist (A to W, as the admin's move)."""
    desk = _desk(config)
    _desk_call(lambda: desk.to_waitlist(enrollment_id))
    console.print(f"enrollment {enrollment_id} moved to the waitlist (W)", highlight=False)


@desk_app.command("block")
def desk_block(
    participant: Annotated[int, typer.Argument(help="the participant number (TEILNEHM.NR)")],
    config: ConfigOption,
    unblock: Annotated[bool, typer.Option("--unblock", help="lift the block instead")] = False,
) -> None:
    """Block a participant (a blocked person always goes to the waitlist), or unblock."""
    desk = _desk(config)
    _desk_call(lambda: desk.block(participant, blocked=not unblock))
    word = "unblocked" if unblock else "blocked"
    console.print(f"participant {participant} {word}", highlight=False)


def main() -> None:  # pragma: no cover - the console script
    app()
