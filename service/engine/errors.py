"""Domain errors raised by the engine; the API layer maps them to HTTP statuses.

Pure Python: must not import fastapi, onnxruntime or prometheus_client.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises to a caller of `Scheduler.submit`."""


class InvalidRequest(EngineError):
    """The request can never be served as given (empty source, beam size out of range, ...)."""


class Overloaded(EngineError):
    """The waiting queue is full; the caller should retry after `retry_after_s` seconds."""

    def __init__(self, retry_after_s: float, message: str = "the translation queue is full") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(EngineError):
    """The request's deadline passed before its translation finished; its rows were freed."""


class Draining(EngineError):
    """The scheduler is draining or stopped and admits no new work."""


class EngineFailure(EngineError):
    """The model failed while this request was in the batch (other requests are unaffected)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
