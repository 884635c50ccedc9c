from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from adapter.ops.broker_node import BrokerNode
from tests import secure
from tests.brokernode import revive
from tests.cluster import Cluster
from tests.secure import SecureNetwork
from tests.services import RABBITMQ_URL, require, require_rabbitmqctl


@pytest.fixture
async def cluster(rabbitmq_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Schools on SQLite admin DBs and the real broker."""

    def sqlite(name: str) -> str:
        return f"sqlite:///{tmp_path / (name + '.db')}"

    network = Cluster(rabbitmq_url, sqlite)
    yield network
    await network.close()


@pytest.fixture
async def scanning_cluster(rabbitmq_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Schools on SQLite whose adapters run a full scan every 0.3 s (as they do every minute)."""
    network = Cluster(
        rabbitmq_url, lambda name: f"sqlite:///{tmp_path / (name + '.db')}", full_scan_interval=0.3
    )
    yield network
    await network.close()


@pytest.fixture
async def any_backend_cluster(
    rabbitmq_url: str, database_url: Callable[[str], str]
) -> AsyncIterator[Cluster]:
    """Schools whose admin and state DBs are on SQLite, PostgreSQL or MariaDB."""
    network = Cluster(rabbitmq_url, database_url)
    yield network
    await network.close()


@pytest.fixture(scope="module")
def secure_networks(request: pytest.FixtureRequest) -> Iterator[list[SecureNetwork]]:
    """One provisioned network (vhost and per-school users) for each test of the module that
    asks for one, made in one go and removed, users and all, at the end of the module."""
    require("RabbitMQ", RABBITMQ_URL)
    require_rabbitmqctl()
    count = sum(
        1
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and "secure_network" in getattr(item, "fixturenames", ())
    )
    networks = secure.create(RABBITMQ_URL, count)
    try:
        yield list(networks)
    finally:
        secure.remove(networks)


@pytest.fixture
def secure_network(secure_networks: list[SecureNetwork]) -> SecureNetwork:
    """A vhost of this test's own with a network provisioned in it: a user per school."""
    return secure_networks.pop()


@pytest.fixture
async def node_cluster(broker_node: BrokerNode, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Schools on SQLite and a broker node of the test's own, which the test may stop."""
    network = Cluster(broker_node.url, lambda name: f"sqlite:///{tmp_path / (name + '.db')}")
    yield network
    await asyncio.to_thread(revive, broker_node)  # what the test stopped, for the clean-up
    await network.close()
