"""The broker: connection and topology, declared as plain data (DESIGN decision 9)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    ChannelAccessRefused,
    ChannelInvalidStateError,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)
from yarl import URL


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: aio_pika.ExchangeType


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


# Routing keys of a school's dead-letter exchange: into its DLQ, and back into its queue.
DEAD_LETTER_KEY = "dead"
REPLAY_KEY = "replay"
# The headers of a dead letter: why it was rejected, by whom and when, where it came from,
# and the broker user that published what was rejected.
REASON_HEADER = "x-vhs-sync-reason"
DETAIL_HEADER = "x-vhs-sync-detail"
REJECTED_BY_HEADER = "x-vhs-sync-rejected-by"
REJECTED_AT_HEADER = "x-vhs-sync-rejected-at"
ROUTING_KEY_HEADER = "x-vhs-sync-routing-key"
BATCH_ID_HEADER = "x-vhs-sync-batch-id"
PUBLISHER_HEADER = "x-vhs-sync-user-id"


class BrokerSetupError(Exception):
    """The broker is not set up for this school: what is missing or refused, and what to do."""


@dataclass(frozen=True, slots=True)
class Topology:
    """One network's exchange and one school's own exchange and queues."""

    exchange: ExchangeSpec
    dead_letters: ExchangeSpec
    queue: QueueSpec
    dlq: QueueSpec
    school: str

    def dead_letter_bindings(self) -> list[tuple[str, str]]:
        """(queue, routing key) bound to the school's dead-letter exchange: its dead letters
        go to its DLQ, and what it replays goes back into its queue."""
        return [(self.dlq.name, DEAD_LETTER_KEY), (self.queue.name, REPLAY_KEY)]


def named(spec: Topology) -> tuple[list[ExchangeSpec], list[QueueSpec]]:
    """Every exchange and queue a topology names, found by the types of its fields, so that
    code removing a network removes what is added to it later too."""
    values = [getattr(spec, part.name) for part in dataclasses.fields(spec)]
    return (
        [value for value in values if isinstance(value, ExchangeSpec)],
        [value for value in values if isinstance(value, QueueSpec)],
    )


def topology(network: str, school: str, *, delivery_limit: int) -> Topology:
    """Per school one durable quorum queue, single active consumer, explicit delivery limit,
    dead-lettered at least once through the school's own dead-letter exchange into its DLQ.
    The exchange is the school's alone, so only its own user can write into its DLQ."""
    dead_letters = ExchangeSpec(f"{network}.{school}.dlx", aio_pika.ExchangeType.DIRECT)
    return Topology(
        exchange=ExchangeSpec(network, aio_pika.ExchangeType.TOPIC),
        dead_letters=dead_letters,
        queue=QueueSpec(
            f"{network}.{school}",
            {
                "x-queue-type": "quorum",
                "x-single-active-consumer": True,
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": dead_letters.name,
                "x-dead-letter-routing-key": DEAD_LETTER_KEY,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        ),
        dlq=QueueSpec(f"{network}.{school}.dlq", {"x-queue-type": "quorum"}),
        school=school,
    )


@dataclass(slots=True)
class Declared:
    exchange: AbstractExchange
    dead_letters: AbstractExchange
    queue: AbstractQueue
    dlq: AbstractQueue


async def declare(channel: AbstractChannel, spec: Topology, *, insecure: bool) -> Declared:
    """What this school needs. Insecure, the adapter declares it all (declaring again is
    harmless). Otherwise `vhs-sync broker provision` has declared it, and a school's user
    may not declare it: it is only checked to exist, and `BrokerSetupError` says what to do."""
    if insecure:
        try:
            return await _declare_all(channel, spec)
        except ChannelPreconditionFailed as error:
            raise BrokerSetupError(
                f"the broker holds this school's topology with other settings "
                f"({_reply_text(error)}): drain and delete the queues of the older release first"
            ) from error
    try:
        exchange = await channel.get_exchange(spec.exchange.name, ensure=True)
        dead_letters = await channel.get_exchange(spec.dead_letters.name, ensure=True)
        dlq = await channel.get_queue(spec.dlq.name, ensure=True)
        queue = await channel.get_queue(spec.queue.name, ensure=True)
    except ChannelNotFoundEntity as error:
        raise BrokerSetupError(
            f"the broker lacks this school's topology ({_reply_text(error)}): provision the "
            "network with `vhs-sync broker provision --config ... --apply`"
        ) from error
    return Declared(exchange, dead_letters, queue, dlq)


async def _declare_all(channel: AbstractChannel, spec: Topology) -> Declared:
    exchange = await channel.declare_exchange(spec.exchange.name, spec.exchange.type, durable=True)
    dead_letters = await channel.declare_exchange(
        spec.dead_letters.name, spec.dead_letters.type, durable=True
    )
    dlq = await channel.declare_queue(spec.dlq.name, durable=True, arguments=spec.dlq.arguments)
    queue = await channel.declare_queue(
        spec.queue.name, durable=True, arguments=spec.queue.arguments
    )
    for name, key in spec.dead_letter_bindings():
        await (dlq if name == dlq.name else queue).bind(dead_letters, routing_key=key)
    return Declared(exchange, dead_letters, queue, dlq)


def _reply_text(error: Exception) -> str:
    """The broker's reply text, e.g. `NOT_FOUND - no exchange 'x' in vhost 'v'`."""
    reply = error.args[0] if error.args else error
    return str(getattr(reply, "reply_text", reply))


def authenticated_publisher(
    user_id: str | None, headers: Mapping[str, Any], own_user: str | None
) -> str | None:
    """The broker user that published a message, as far as the broker vouches for it.

    RabbitMQ verifies `user_id`. A dead letter, and a dead letter replayed, names the original
    publisher in a header; only this school's own user writes into its dead-letter exchange,
    so the header is believed only on a message this school's user published. Any other
    message's headers are its publisher's to write, and prove nothing."""
    if own_user is not None and user_id == own_user and PUBLISHER_HEADER in headers:
        return str(headers[PUBLISHER_HEADER]) or None
    return user_id


def broker_user(url: str) -> str:
    """The user a connection authenticates as; RabbitMQ checks `user_id` against it."""
    return URL(url).user or "guest"


def vhost(url: str) -> str:
    """The virtual host a URL names, as aiormq reads it: its path, or `/` when it has none."""
    path = URL(url).path
    return "/" if path in ("", "/") else path[1:].replace("%2F", "/")


# Seconds one attempt to connect may take: a broker that takes the TCP connection and then
# says nothing (a mistyped port, a firewall) fails the attempt instead of hanging it.
CONNECT_TIMEOUT = 10.0


async def connect(
    url: str, *, name: str, attempt_timeout: float = CONNECT_TIMEOUT
) -> AbstractRobustConnection:
    """A connection that reconnects and restores its channels by itself. Each attempt may
    take `attempt_timeout` seconds; a first one that fails raises (`TimeoutError`: nothing
    answered)."""
    connection = aio_pika.RobustConnection(
        aio_pika.connection.make_url(url), client_properties={"connection_name": name}
    )
    try:
        await connection.connect(timeout=attempt_timeout)
    except TimeoutError as error:
        await asyncio.shield(connection.close())
        raise TimeoutError(f"no answer within {attempt_timeout:g} s") from error
    except BaseException:
        # A first attempt that failed or was cancelled (Ctrl-C) leaves aio-pika's reconnect
        # task behind, which outlives even cancelling every task: closing ends it.
        await asyncio.shield(connection.close())
        raise
    return connection


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    return str(URL(url).with_password(None)) if URL(url).password else url


# What publishing, acknowledging or cancelling raises when the connection or the channel is
# gone (the broker restarts or is unreachable). A robust connection restores both by itself;
# meanwhile the broker has taken back every unacknowledged message and delivers it again.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    ChannelInvalidStateError,
    AMQPConnectionError,
    AMQPChannelError,
    ConnectionError,
)
# What the broker says when it refuses: no waiting makes these go away.
_REFUSED: tuple[type[BaseException], ...] = (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ChannelLockedResource,
)


def connection_lost(error: BaseException) -> bool:
    """Whether `error` says the broker went away (wait and try again), not that it refused
    (a missing queue, a revoked permission: trying again changes nothing)."""
    return isinstance(error, CONNECTION_LOST) and not isinstance(error, _REFUSED)
