"""Dead-letter tools: list what was rejected and why, and replay it once the cause is fixed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from adapter import broker
from adapter.config import Settings
from adapter.messages import REPLAYED_HEADER


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str | None
    reason: str
    detail: str
    rejected_at: str
    routing_key: str
    size: int


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    return DeadLetter(
        message_id=message.message_id,
        reason=str(headers.get(broker.REASON_HEADER, "delivery_limit_or_unknown")),
        detail=str(headers.get(broker.DETAIL_HEADER, "")),
        rejected_at=str(headers.get(broker.REJECTED_AT_HEADER, "")),
        routing_key=str(headers.get(broker.ROUTING_KEY_HEADER, message.routing_key or "")),
        size=len(message.body),
    )


async def _drain(settings: Settings, handle: Any) -> list[DeadLetter]:
    """Take the dead letters there are when it starts, without acknowledging them; `handle`
    decides what to settle. What is left unsettled goes back to the queue when the channel
    closes. A snapshot: letters that arrive meanwhile (a replayed one that is still bad comes
    straight back) are left for the next time."""
    spec = _spec(settings)
    connection = await broker.connect(
        settings.broker.url, name=f"vhs-sync dlq {settings.school.id}"
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await _dlq(channel, spec)
        if queue is None:
            return []
        dead_letters = await channel.get_exchange(spec.dead_letters.name, ensure=False)
        taken: list[DeadLetter] = []
        for _ in range(int(queue.declaration_result.message_count or 0)):
            message = await queue.get(fail=False)
            if message is None:
                break
            letter = _describe(message)
            taken.append(letter)
            await handle(dead_letters, message, letter)
    return taken


def _spec(settings: Settings) -> broker.Topology:
    return broker.topology(
        settings.broker.network, settings.school.id, delivery_limit=settings.broker.delivery_limit
    )


async def _dlq(channel: AbstractChannel, spec: broker.Topology) -> AbstractQueue | None:
    """The school's DLQ, or None when it does not exist yet (nothing was dead-lettered)."""
    try:
        return await channel.get_queue(spec.dlq.name, ensure=True)
    except ChannelNotFoundEntity:
        return None


async def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    async def leave(*_: Any) -> None:
        return None

    return await _drain(settings, leave)


def replay_headers(
    headers: Mapping[str, Any], user_id: str | None, own_user: str
) -> dict[str, Any]:
    """The headers a dead letter goes back with: none of vhs-sync's own but the publisher, as
    the broker authenticated it. A letter this school's adapter dead-lettered carries the
    publisher it recorded; any other letter (dead-lettered by the broker) keeps the
    `user_id` its publisher had, and a publisher header of its own proves nothing."""
    kept = {k: v for k, v in headers.items() if not k.startswith("x-vhs-sync-")}
    kept[broker.PUBLISHER_HEADER] = broker.authenticated_publisher(user_id, headers, own_user) or ""
    kept[REPLAYED_HEADER] = True
    return kept


async def replay(settings: Settings, message_ids: set[str] | None) -> list[DeadLetter]:
    """Put dead letters (all, or those with these ids) back into this school's own queue,
    through its dead-letter exchange; returns what was replayed."""
    replayed: list[DeadLetter] = []
    own_user = settings.broker_user

    async def put_back(
        dead_letters: AbstractExchange, message: AbstractIncomingMessage, letter: DeadLetter
    ) -> None:
        if message_ids is not None and message.message_id not in message_ids:
            return
        await dead_letters.publish(
            aio_pika.Message(
                message.body,
                headers=replay_headers(message.headers or {}, message.user_id, own_user),
                content_type=message.content_type,
                message_id=message.message_id,
                user_id=own_user,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=broker.REPLAY_KEY,
            mandatory=True,
        )
        await message.ack()
        replayed.append(letter)

    await _drain(settings, put_back)
    return replayed


async def purge(settings: Settings) -> int:
    connection = await broker.connect(
        settings.broker.url, name=f"vhs-sync dlq {settings.school.id}"
    )
    async with connection:
        channel = await connection.channel()
        queue = await _dlq(channel, _spec(settings))
        if queue is None:
            return 0
        result = await queue.purge()
        return int(result.message_count or 0)
