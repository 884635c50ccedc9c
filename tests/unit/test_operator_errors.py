"""`explain`: the errors an operator can cause as one line and an exit code, never a
password or a database message that could quote a row; the CLI's one place that prints them."""

from __future__ import annotations

import errno

import pytest
import typer
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProbableAuthenticationError
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.testing import CliRunner

from adapter.cli import _Commands
from adapter.config import DatabaseSection, SchoolSection, Settings
from adapter.ops.errors import explain

SETTINGS = Settings(
    school=SchoolSection(id="vhs-ka", name="vhs Karlsruhe"),
    admin_db=DatabaseSection(url="postgresql://vhs:db-secret@db.example/admin"),
    state_db=DatabaseSection(url="sqlite:///state.db"),
    broker={"url": "amqp://ka:broker-secret@broker.example:5672/vhskoob"},
    metrics={"port": 9464},
)


def refused() -> AMQPConnectionError:
    error = AMQPConnectionError(111, "Connect call failed ('10.0.0.1', 5672)")
    error.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    return error


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (TimeoutError("no answer within 10 s"), "did not answer within 10 s"),
        (ProbableAuthenticationError("ACCESS_REFUSED"), "refused the login of user 'ka'"),
        (
            InvalidFrameError("Expected one of ['Connection.OpenOk'], got <Connection.Close>"),
            "refused to open the vhost 'vhskoob'",
        ),
        (refused(), "cannot reach broker at ka@broker.example:5672/vhskoob: Connection refused"),
        (
            OSError(errno.EADDRINUSE, "Address in use"),
            "cannot serve metrics on 127.0.0.1:9464: the port is in use",
        ),
    ],
)
def test_broker_and_socket_errors_name_the_broker_without_the_password(
    error: BaseException, said: str
) -> None:
    """Each broker failure says what happened at which broker (user, host, vhost), exit 1."""
    explained = explain(error, SETTINGS)
    assert explained is not None
    assert said in explained.message
    assert "broker-secret" not in explained.message
    assert explained.code == 1


def test_a_database_that_cannot_be_reached_is_named_without_its_password() -> None:
    """A failed connect names the admin DB by its URL with the password hidden."""
    error = OperationalError(None, None, Exception("connection failed: Connection refused"))
    error.database_url = SETTINGS.admin_db.url  # type: ignore[attr-defined]
    explained = explain(error, SETTINGS)
    assert explained is not None
    assert explained.message == (
        "cannot connect to the admin DB (postgresql://vhs:***@db.example/admin): Connection refused"
    )


def test_a_refused_write_is_not_explained_so_its_row_is_never_shown() -> None:
    """An integrity error's message may quote a person's row: it is no operator error."""
    error = IntegrityError("INSERT ...", {}, Exception("Key (email)=(greta@example.org)"))
    assert explain(error, SETTINGS) is None


def test_an_unforeseen_error_is_one_line_naming_its_class_never_its_message() -> None:
    """A bug ends as one line with the class and place, exit 1; its message is not shown."""
    app = typer.Typer(cls=_Commands)

    @app.command()
    def broken() -> None:
        raise ValueError("greta@example.org")

    @app.command()
    def other() -> None:  # two commands, so that the command is named on the command line
        """Nothing."""

    result = CliRunner().invoke(app, ["broken"])
    assert result.exit_code == 1
    assert "unexpected ValueError" in result.output
    assert "greta" not in result.output
    assert len(result.output.strip().splitlines()) == 1
