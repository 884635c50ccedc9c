"""Telling a broker that went away from a broker that refuses (item 1's ride-through must not
turn a refusal into a retry for ever)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
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


class EnoughRoundsError(Exception):
    """The test has seen enough rounds."""


def outage_of(rounds: int, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`asyncio.sleep` returns at once, for `rounds` calls, and then ends the loop."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= rounds:
            raise EnoughRoundsError

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return slept


def failing(*args: object, **kwargs: object) -> Any:
    raise ConnectionResetError("the broker or database is away")


def loop_owner() -> Any:
    """Just enough of a daemon for its retry loops, everything failing."""
    return types.SimpleNamespace(
        school="vhs-ka",
        settings=types.SimpleNamespace(
            capture=types.SimpleNamespace(
                join_interval=0.5, poll_interval=0.2, full_scan_interval=60.0
            )
        ),
        _join_courses=failing,
        applier=types.SimpleNamespace(ensure_recovered=failing),
        health=types.SimpleNamespace(last_poll_error=None),
        _relay_wake=asyncio.Event(),
        clock=lambda: None,
    )


async def work_failing() -> None:
    raise ConnectionResetError("the broker is away")


@pytest.mark.parametrize(
    "loop",
    [
        lambda daemon: Daemon._join_loop(daemon),
        lambda daemon: Daemon._capture_loop(daemon),
        lambda daemon: Daemon._relay_loop(daemon, types.SimpleNamespace(relay_once=failing)),
        lambda daemon: Daemon._supervised(daemon, "receiver", work_failing),
    ],
    ids=["join", "capture", "relay", "receiver"],
)
async def test_the_retry_loops_ride_through_an_outage_of_any_length(
    loop: Callable[[Any], Awaitable[None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker or database away for hours (thousands of failed rounds in a row): each loop
    keeps retrying at its longest pause, instead of ending the daemon when its pause grew
    beyond what a float holds."""
    daemon = loop_owner()

    async def retried() -> None:
        await loop(daemon)

    slept = outage_of(1500, monkeypatch)
    with pytest.raises(EnoughRoundsError):
        await retried()
    assert len(slept) == 1500
    assert 0 < slept[-1] <= 30
