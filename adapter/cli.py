"""The `vhs-sync` command: one command per job."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from adapter.config import ConfigError, Settings, load_settings
from adapter.store.db import DatabaseUrlError

if TYPE_CHECKING:
    from adapter.desk import Desk

app = typer.Typer(
    help="vhs-sync: enrollment sync between adult-education schools that share courses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
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
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_from(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as error:
        fail(str(error))


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

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon.run(stop)

    try:
        asyncio.run(main())
    except (SchoolHeldError, ServeError) as error:
        fail(str(error), 1)
    except (DatabaseUrlError, BrokerSetupError) as error:
        fail(str(error))
    except (ConnectionError, OSError) as error:
        fail(f"cannot reach the broker at {settings.broker.url.split('@')[-1]}: {error}", 1)


@app.command()
def migrate(config: ConfigOption) -> None:
    """Create or update the adapter's state DB."""
    from adapter.store.db import make_engine, migrate_state

    settings = settings_from(config)
    migrate_state(make_engine(settings.state_db.url))
    console.print(f"state DB ready: {settings.state_db.url}")


@admin_db_app.command("create")
def admin_db_create(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="the school's TOML file")
    ] = None,
    url: Annotated[str | None, typer.Option(help="an SQLAlchemy URL instead of a config")] = None,
) -> None:
    """Create the reference admin DB schema (KURSE, TEILNEHM, BELEGUNG, ...)."""
    from adapter.store.db import create_admin_schema, make_engine

    if (config is None) == (url is None):
        fail("give either --config or --url")
    target = url if url is not None else settings_from(config).admin_db.url  # type: ignore[arg-type]
    try:
        create_admin_schema(make_engine(target))
    except DatabaseUrlError as error:
        fail(str(error))
    console.print(f"admin DB ready: {target}")


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


@dlq_app.command("list")
def dlq_list(config: ConfigOption, as_json: JsonOption = False) -> None:
    """The dead letters of this school, with the reason each was rejected."""
    from adapter.ops.dlq import list_dead_letters

    letters = _broker_call(config, list_dead_letters)
    if as_json:
        sys.stdout.write(json.dumps([asdict(letter) for letter in letters], indent=2) + "\n")
        return
    table = Table("message id", "reason", "detail", "rejected at", "routing key")
    for letter in letters:
        table.add_row(
            letter.message_id or "",
            letter.reason,
            letter.detail,
            letter.rejected_at,
            letter.routing_key,
        )
    console.print(table)
    console.print(f"{len(letters)} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOption,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="replay this message")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
) -> None:
    """Put dead letters back into this school's queue, once their cause is fixed."""
    from adapter.ops.dlq import replay

    if replay_all == bool(message_id):
        fail("give either --all or one or more --id")
    wanted = None if replay_all else set(message_id or [])
    replayed = _broker_call(config, lambda settings: replay(settings, wanted))
    console.print(f"replayed {len(replayed)} message(s)")


@dlq_app.command("purge")
def dlq_purge(
    config: ConfigOption,
    yes: Annotated[bool, typer.Option("--yes", help="really drop every dead letter")] = False,
) -> None:
    """Drop every dead letter of this school."""
    from adapter.ops.dlq import purge

    if not yes:
        fail("purging drops messages for good: add --yes")
    console.print(f"purged {_broker_call(config, purge)} message(s)")


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


def _desk(config: Path) -> Desk:
    """The desk of the school in this config, with its mailer when `[smtp]` is set."""
    import logging

    import structlog

    from adapter.bootstrap import engines
    from adapter.desk import Desk, SmtpMailer
    from adapter.desk.places import PlaceClient
    from adapter.store.db import migrate_state

    # The answer goes to stdout (perhaps as JSON); the desk's log only warns, on stderr.
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    settings = settings_from(config)
    try:
        both = engines(settings)
        migrate_state(both.state)
    except DatabaseUrlError as error:
        fail(str(error))
    mailer = SmtpMailer.from_settings(settings.smtp) if settings.smtp is not None else None
    places = PlaceClient(settings.broker.url, settings.broker.network, settings.school.id)
    return Desk(both.admin, both.state, settings.school.id, mailer=mailer, places=places)


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
