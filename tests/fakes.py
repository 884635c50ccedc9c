"""Stand-ins for the broker's side of a receiver: an incoming message, the dead-letter
exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.messages import EVENT_CONTENT_TYPE


@dataclass
class Message:
    """An incoming message as the receiver sees it."""

    body: bytes
    user_id: str | None
    content_type: str = EVENT_CONTENT_TYPE
    headers: dict[str, Any] = field(default_factory=dict)
    routing_key: str = "enr.vhs-sr.26-4711.anon"
    message_id: str = "m-1"
    reply_to: str | None = None
    correlation_id: str | None = None
    processed: bool = False
    acked: bool = False

    async def ack(self, multiple: bool = False) -> None:
        self.processed = self.acked = True

    async def reject(self, requeue: bool = False) -> None:
        self.processed = True


@dataclass
class DeadLetters:
    """The dead-letter exchange: what was published to it."""

    published: list[Any] = field(default_factory=list)

    async def publish(self, message: Any, routing_key: str, mandatory: bool = False) -> None:
        self.published.append(message)
