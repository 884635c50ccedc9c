"""Fixtures shared by every kind of test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from adapter.ops.broker_node import BrokerNode
from tests.brokernode import own_node, revive
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    RABBITMQ_URL,
    RUN,
    leftovers_on_the_broker,
    require,
    scratch_database,
)

_shared_broker_used: list[bool] = []


@pytest.fixture
def rabbitmq_url() -> str:
    require("RabbitMQ", RABBITMQ_URL)
    _shared_broker_used.append(True)
    return RABBITMQ_URL


@pytest.fixture(scope="session", autouse=True)
def nothing_left_on_the_shared_broker() -> Iterator[None]:
    """After the run, no exchange or queue that this run's tests declared is left on the
    shared broker (each network of the run has `RUN` in its name)."""
    yield
    if not _shared_broker_used:
        return
    left = leftovers_on_the_broker(RABBITMQ_URL, RUN)
    assert not left, f"tests left these on the shared broker: {sorted(left)}"


AdminUrlFactory = Callable[[str], str]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdminUrlFactory]:
    """Makes a fresh, empty database per name, on each backend the product supports."""
    backend = request.param
    with ExitStack() as stack:
        if backend == "sqlite":

            def make(name: str) -> str:
                return f"sqlite:///{tmp_path / (name + '.db')}"

        else:
            server = POSTGRES_URL if backend == "postgresql" else MARIADB_URL
            require("PostgreSQL" if backend == "postgresql" else "MariaDB", server)

            def make(name: str) -> str:
                return stack.enter_context(scratch_database(server))

        yield make


@pytest.fixture(scope="module")
def module_broker_node() -> Iterator[BrokerNode]:
    """One broker node of the module's own (starting one takes seconds)."""
    with own_node() as node:
        yield node


@pytest.fixture
def broker_node(module_broker_node: BrokerNode) -> BrokerNode:
    """The module's own node, running, for a test that may stop, restart or kill it."""
    revive(module_broker_node)
    return module_broker_node
