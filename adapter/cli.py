"""The `vhs-sync` command: one command per job."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from adapter.config import ConfigError, Settings, load_settings
from adapter.store.db import DatabaseUrlError

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
) -> None:
    """Run this school's adapter (capture, relay, consumer) until SIGTERM or Ctrl-C."""
    from adapter.bootstrap import Daemon
    from adapter.ops import logs, metrics

    settings = settings_from(config)
    logs.configure(json=True, level=log_level)
    if settings.metrics.port is not None:
        metrics.serve(settings.metrics.host, settings.metrics.port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Daemon(settings).run(stop)

    try:
        asyncio.run(main())
    except DatabaseUrlError as error:
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
    """Outbox, queue and dead letters of this school; exits 1 when it is not healthy."""
    from adapter.bootstrap import engines, utcnow
    from adapter.ops.status import read_status
    from adapter.store.db import migrate_state

    settings = settings_from(config)
    state_engine = engines(settings).state
    migrate_state(state_engine)
    current = asyncio.run(read_status(settings, state_engine, utcnow()))
    if as_json:
        sys.stdout.write(json.dumps(current.as_dict(), indent=2) + "\n")
    else:
        for name, value in current.as_dict().items():
            console.print(f"{name:28} {value}", highlight=False)
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


def main() -> None:  # pragma: no cover - the console script
    app()
