"""Event bus adapters: the outbox itself (embedded), Redis Streams and NATS JetStream."""

from brokerdesk.core.bus.base import Bus, Delivery, Message, StreamDepth

__all__ = ["Bus", "Delivery", "Message", "StreamDepth"]
