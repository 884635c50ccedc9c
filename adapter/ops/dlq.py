"""Dead-letter tools: list what was rejected and why, and replay it once the cause is fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from adapter import broker
from adapter.config import Settings
from adapter.messages import REPLAYED_HEADER

REASON = "x-vhs-sync-reason"
DETAIL = "x-vhs-sync-detail"
ORIGINAL_USER = "x-vhs-sync-user-id"


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
        reason=str(headers.get(REASON, "delivery_limit_or_unknown")),
        detail=str(headers.get(DETAIL, "")),
        rejected_at=str(headers.get("x-vhs-sync-rejected-at", "")),
        routing_key=str(headers.get("x-vhs-sync-routing-key", message.routing_key or "")),
        size=len(message.body),
    )


async def _drain(settings: Settings, handle: Any) -> list[DeadLetter]:
    """Take every dead letter without acknowledging it; `handle` decides what to settle.
    What is left unsettled goes back to the queue when the channel closes."""
    spec = broker.topology(
        settings.broker.network, settings.school.id, delivery_limit=settings.broker.delivery_limit
    )
    connection = await broker.connect(
        settings.broker.url, name=f"vhs-sync dlq {settings.school.id}"
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(
            spec.dlq.name, durable=True, arguments=spec.dlq.arguments
        )
        taken: list[DeadLetter] = []
        while (message := await queue.get(fail=False)) is not None:
            letter = _describe(message)
            taken.append(letter)
            await handle(channel, spec, message, letter)
    return taken


async def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    async def leave(*_: Any) -> None:
        return None

    return await _drain(settings, leave)


async def replay(settings: Settings, message_ids: set[str] | None) -> list[DeadLetter]:
    """Put dead letters (all, or those with these ids) back into this school's own queue, as
    they were; returns what was replayed."""
    replayed: list[DeadLetter] = []

    async def put_back(
        channel: Any, spec: broker.Topology, message: AbstractIncomingMessage, letter: DeadLetter
    ) -> None:
        if message_ids is not None and message.message_id not in message_ids:
            return
        headers = {
            k: v
            for k, v in (message.headers or {}).items()
            if not k.startswith("x-vhs-sync-") or k == ORIGINAL_USER
        }
        headers[REPLAYED_HEADER] = True
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                message_id=message.message_id,
                user_id=broker.broker_user(settings.broker.url),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=spec.queue.name,
            mandatory=True,
        )
        await message.ack()
        replayed.append(letter)

    await _drain(settings, put_back)
    return replayed


async def purge(settings: Settings) -> int:
    spec = broker.topology(
        settings.broker.network, settings.school.id, delivery_limit=settings.broker.delivery_limit
    )
    connection = await broker.connect(
        settings.broker.url, name=f"vhs-sync dlq {settings.school.id}"
    )
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            spec.dlq.name, durable=True, arguments=spec.dlq.arguments
        )
        result = await queue.purge()
        return int(result.message_count or 0)
