"""The trainer: walk samples -> durable corpus -> Word2Vec versions published to Redis."""

from streaming.trainer.loop import Trainer

__all__ = ["Trainer"]
