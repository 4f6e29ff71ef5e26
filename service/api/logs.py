"""Structured JSON logging with the request id of the request being served.

The middleware sets `request_id_var`; every log record carries it. Request texts are never logged
here (routes log them only when TRANSLATOR_LOG_REQUEST_TEXT is on). Stdlib only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# Set (and never reset) in a request's task once the edge saw its client go away before its answer
# could be written: what uvicorn then says about that request's unfinished response is no error.
client_gone_var: ContextVar[bool] = ContextVar("client_gone", default=False)
UNFINISHED_RESPONSE = "ASGI callable returned without completing response"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ClientGoneFilter(logging.Filter):
    """uvicorn logs an unfinished response at ERROR, also for a request pipelined behind a connection
    the client closed (it marks only the request in progress as disconnected). When the edge saw that
    client go, the record is a WARNING: the client's doing, not the service's fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and client_gone_var.get() and UNFINISHED_RESPONSE in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str) -> None:
    """One JSON handler on stderr for our loggers and uvicorn's; uvicorn's access log is replaced by ours."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, ClientGoneFilter) for existing in uvicorn_errors.filters):
        uvicorn_errors.addFilter(ClientGoneFilter())
    logging.getLogger("uvicorn.access").disabled = True
