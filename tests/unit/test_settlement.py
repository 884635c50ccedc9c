"""Settling messages while the broker goes away: nothing raised, nothing lost (item 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelInvalidStateError

from adapter.consumers.apply import Applier
from adapter.consumers.receiver import Receiver
from adapter.domain import CourseRef
from adapter.messages import EVENT_CONTENT_TYPE, course_sync_requested

NOW = datetime(2025, 9, 18, 10, 30, tzinfo=UTC)


class Channel:
    """The consuming channel as a message sees it; `alive` turns False when the broker goes."""

    def __init__(self) -> None:
        self.alive = True


class Message:
    """An incoming message that records how it was settled."""

    def __init__(self, body: bytes, channel: Channel) -> None:
        self.body = body
        self.content_type = EVENT_CONTENT_TYPE
        self.headers: dict[str, Any] = {}
        self.user_id = None
        self.message_id = "m-1"
        self.routing_key = "route"
        self.reply_to = None
        self.correlation_id = None
        self.processed = False
        self.settled: list[str] = []
        self._channel = channel

    @property
    def channel(self) -> Channel:
        if not self._channel.alive:
            raise ChannelInvalidStateError("closed")
        return self._channel

    async def _settle(self, how: str) -> None:
        self.channel  # noqa: B018 - raises on a dead channel, as aio-pika's does
        self.settled.append(how)
        self.processed = True

    async def ack(self, multiple: bool = False) -> None:
        await self._settle("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self._settle(f"nack requeue={requeue}")

    async def reject(self, requeue: bool = False) -> None:
        await self._settle(f"reject requeue={requeue}")


class DeadLetters:
    """A dead-letter exchange on a channel that dies as the copy is published."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def publish(self, message: Any, **_: Any) -> None:
        self.channel.alive = False
        raise ChannelInvalidStateError("closed")


def receiver(dead_letters: object) -> Receiver:
    return Receiver(
        cast(AbstractQueue, None),
        cast(AbstractExchange, dead_letters),
        cast(Applier, None),
        school="vhs-sr",
        broker_users={"vhs-sr": None, "vhs-ka": None},
        handlers={},
    )


async def test_a_dead_letter_that_cannot_be_sent_leaves_its_message_for_redelivery() -> None:
    """An invalid message whose dead letter cannot be published because the broker went
    away is neither acknowledged nor rejected: the broker delivers it again, and nothing
    is raised."""
    channel = Channel()
    message = Message(b"{not json", channel)
    await receiver(DeadLetters(channel)).handle_batch([cast(AbstractIncomingMessage, message)])
    assert message.settled == []


async def test_an_acknowledgement_on_a_dead_channel_is_dropped() -> None:
    """A batch whose acknowledgement fails because the channel died meanwhile is dropped
    without an error (its messages come again)."""
    channel = Channel()
    request = course_sync_requested(
        CourseRef("vhs-sr", "25-64901B"), requested_by="vhs-ka", event_id="r-1", time=NOW
    )
    message = Message(request.model_dump_json().encode(), channel)

    async def broker_gone(_: object) -> None:
        channel.alive = False

    handling = receiver(DeadLetters(channel))
    handling.handlers = {type(request): broker_gone}
    await handling.handle_batch([cast(AbstractIncomingMessage, message)])
    assert message.settled == []
