"""Telling a broker that went away from a broker that refuses (item 1's ride-through must not
turn a refusal into a retry for ever)."""

from __future__ import annotations

import types
from typing import Any, cast

import pytest
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ConnectionClosed,
)

from adapter import broker
from adapter.bootstrap import Daemon


@pytest.mark.parametrize(
    "error",
    [ChannelInvalidStateError("closed"), ConnectionClosed(320, "forced"), ConnectionResetError()],
)
def test_a_broker_that_went_away_is_waited_for(error: BaseException) -> None:
    """A closed channel, a connection the broker closed or a reset socket: the broker is back
    soon, and what was not settled is delivered again."""
    assert broker.connection_lost(error)


@pytest.mark.parametrize(
    "error",
    [
        ChannelAccessRefused("ACCESS_REFUSED"),
        ChannelNotFoundEntity("NOT_FOUND"),
        ChannelPreconditionFailed("PRECONDITION_FAILED"),
        ValueError("a bug"),
    ],
)
def test_a_refusal_is_not_a_broker_that_went_away(error: BaseException) -> None:
    """A revoked permission, a deleted queue or a bug does not go away by waiting."""
    assert not broker.connection_lost(error)


async def test_a_task_refused_by_the_broker_ends_the_daemon() -> None:
    """The receiver is started again after the broker went away, but a refusal (here a
    revoked permission) ends the daemon instead of being retried for ever."""
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ChannelAccessRefused("ACCESS_REFUSED - access to queue refused")

    daemon = cast(Any, types.SimpleNamespace(school="vhs-ka"))
    with pytest.raises(ChannelAccessRefused):
        await Daemon._supervised(daemon, "receiver", refused)
    assert calls == 1
