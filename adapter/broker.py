"""The broker: connection and topology, declared as plain data (DESIGN decision 9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import AMQPChannelError, AMQPConnectionError, ChannelInvalidStateError
from yarl import URL


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: aio_pika.ExchangeType


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topology:
    """One network's exchanges and one school's queues."""

    exchange: ExchangeSpec
    dead_letters: ExchangeSpec
    queue: QueueSpec
    dlq: QueueSpec
    school: str


def topology(network: str, school: str, *, delivery_limit: int) -> Topology:
    """Per school one durable quorum queue, single active consumer, explicit delivery limit,
    dead-lettered at least once into the school's DLQ."""
    dead_letters = ExchangeSpec(f"{network}.dlx", aio_pika.ExchangeType.DIRECT)
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
                "x-dead-letter-routing-key": school,
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


async def declare(channel: AbstractChannel, spec: Topology) -> Declared:
    """Declare everything this school needs; declaring again is harmless."""
    exchange = await channel.declare_exchange(spec.exchange.name, spec.exchange.type, durable=True)
    dead_letters = await channel.declare_exchange(
        spec.dead_letters.name, spec.dead_letters.type, durable=True
    )
    dlq = await channel.declare_queue(spec.dlq.name, durable=True, arguments=spec.dlq.arguments)
    await dlq.bind(dead_letters, routing_key=spec.school)
    queue = await channel.declare_queue(
        spec.queue.name, durable=True, arguments=spec.queue.arguments
    )
    return Declared(exchange, dead_letters, queue, dlq)


def broker_user(url: str) -> str:
    """The user a connection authenticates as; RabbitMQ checks `user_id` against it."""
    return URL(url).user or "guest"


async def connect(url: str, *, name: str) -> AbstractRobustConnection:
    """A connection that reconnects and restores its channels by itself."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name})


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
