"""A broker node of the tests' own, for the tests that make the broker stop, restart or die.

Never the machine's broker: see `adapter.ops.broker_node`. Where RabbitMQ is not installed a
test that needs its own node is skipped with the reason, except in CI (`CI=true`), where it
is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from adapter.ops.broker_node import BrokerNode, scripts_dir


def require_rabbitmq_server() -> None:
    """Skip (or, in CI, fail) when rabbitmq-server is not installed."""
    if scripts_dir() is not None:
        return
    message = "rabbitmq-server is not installed: a test that stops a broker needs its own node"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI needs every service", pytrace=False)
    pytest.skip(message)


@contextmanager
def own_node() -> Iterator[BrokerNode]:
    """A node started for the caller, stopped and removed afterwards."""
    require_rabbitmq_server()
    with BrokerNode(prefix="vhs-test") as node:
        yield node


def revive(node: BrokerNode) -> None:
    """The node running and its broker accepting connections, whatever a test did to it."""
    if not node.running:
        node.start()
    elif not node.accepts_connections():
        node.start_app()
