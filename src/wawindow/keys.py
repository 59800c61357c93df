"""Every Kafka topic name (and, as the engine grows, every Redis key) in one place."""

from __future__ import annotations

from dataclasses import dataclass

WEBHOOK_EVENTS = "webhook-events"
WINDOW_EVENTS = "window-events"
DEAD_LETTER = "dead-letter"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one deployment, after ``WAWINDOW_TOPIC_PREFIX``."""

    prefix: str = "wawindow."

    @property
    def webhook_events(self) -> str:
        return self.prefix + WEBHOOK_EVENTS

    @property
    def window_events(self) -> str:
        return self.prefix + WINDOW_EVENTS

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER

    def all(self) -> tuple[str, ...]:
        return (self.webhook_events, self.window_events, self.dead_letter)


def conversation_key(phone_number_id: str, user: str) -> str:
    """The conversation key ``phone_number_id:user``: Kafka key and Redis hash tag alike."""
    return f"{phone_number_id}:{user}"
