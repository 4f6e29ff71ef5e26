"""THE table from domain errors to HTTP statuses, the one error JSON shape, and the handlers that use them.

Every error the service answers (FastAPI's own 404/405/422 included) goes through `ERROR_TABLE`.
HTTP edge only: knows nothing about ONNX; the engine and registry never import this module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.engine.errors import DeadlineExceeded, Draining, EngineFailure, InvalidRequest, Overloaded
from service.models import ModelLoadFailed, ModelNotFound

log = logging.getLogger("service.api")


# Errors raised by the HTTP layer itself (the engine's and registry's are imported above).
class InvalidInput(Exception):
    """The request is well-formed JSON but asks for something impossible (empty text, ...)."""


class UnsupportedLanguagePair(InvalidInput):
    """No loaded model translates from `source` to `target`."""


class AttentionUnavailable(InvalidInput):
    """The model has no attention (manifest attention "none"), so there are no weights to show."""


class UnsupportedMediaType(Exception):
    """The body's Content-Type is not one this route reads."""


class PayloadTooLarge(Exception):
    """A text, the number of texts, the source tokens or the body exceed a configured limit."""


class BodyTimeout(Exception):
    """The client did not send its whole body within TRANSLATOR_BODY_TIMEOUT_S (a stalled or slowloris client)."""


class Unauthorized(Exception):
    """API keys are configured and the request carries no key or a wrong one."""


class AdminDisabled(Exception):
    """Admin routes need API keys to be configured; none are."""


class NotReady(Exception):
    """Models are not loaded and warmed up yet."""


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; its work was cancelled."""


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    code: str
    reject_reason: str | None  # label of translator_requests_rejected_total; None: not counted
    description: str  # shown in the OpenAPI schema


ERROR_TABLE: dict[type[BaseException], ErrorSpec] = {
    RequestValidationError: ErrorSpec(
        422, "invalid_request", "invalid", "The body or parameters do not match the schema."
    ),
    UnsupportedLanguagePair: ErrorSpec(
        422, "unsupported_language_pair", "invalid", "No loaded model translates this language pair."
    ),
    AttentionUnavailable: ErrorSpec(
        422, "attention_unavailable", "invalid", "The model has no attention weights to show."
    ),
    InvalidInput: ErrorSpec(422, "invalid_request", "invalid", "The request cannot be served as given."),
    InvalidRequest: ErrorSpec(422, "invalid_request", "invalid", "The request cannot be served as given."),
    UnsupportedMediaType: ErrorSpec(
        415, "unsupported_media_type", "invalid", "The Content-Type is not accepted by this route."
    ),
    PayloadTooLarge: ErrorSpec(
        413,
        "too_large",
        "too_large",
        "Body, text, number of texts or source tokens over the configured limit.",
    ),
    BodyTimeout: ErrorSpec(
        408, "body_timeout", "body_timeout", "The request body did not arrive in time; the connection is closed."
    ),
    Unauthorized: ErrorSpec(401, "unauthorized", "unauthorized", "API keys are on and the key is missing or wrong."),
    AdminDisabled: ErrorSpec(403, "admin_disabled", None, "Admin routes are off because no API keys are set."),
    ModelNotFound: ErrorSpec(404, "model_not_found", None, "No such model or version in the store."),
    ModelLoadFailed: ErrorSpec(
        409, "reload_failed", None, "The new version failed to load; the old one keeps serving."
    ),
    Overloaded: ErrorSpec(429, "overloaded", "overloaded", "The queue is full; retry after Retry-After seconds."),
    ClientDisconnected: ErrorSpec(499, "client_closed_request", None, "The client went away; work was cancelled."),
    EngineFailure: ErrorSpec(500, "inference_failed", "failed", "The model failed on this batch."),
    NotReady: ErrorSpec(503, "not_ready", None, "Models are still loading."),
    Draining: ErrorSpec(503, "draining", "draining", "The service is shutting down and takes no new work."),
    DeadlineExceeded: ErrorSpec(
        504, "deadline_exceeded", "deadline", "The translation did not finish within the request timeout."
    ),
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}
INTERNAL = ErrorSpec(500, "internal_error", "failed", "An unexpected server error.")


def spec_for(exc: BaseException) -> ErrorSpec:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's "error parsing the body": invalid input like any other
            return ERROR_TABLE[RequestValidationError]
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return ErrorSpec(exc.status_code, code, None, str(exc.detail))
    return INTERNAL


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _field_name(loc: tuple[object, ...]) -> str:
    """`("body", "text", "constrained-str")` -> `text`: drop the request part and pydantic's
    union-branch labels, which name validator internals, not anything the client sent."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(p for p in parts if p != "none" and "-" not in p and "[" not in p)


def _readable(message: str) -> str:
    if "should match pattern '[^" in message:  # schemas.NOT_ONLY_WHITESPACE, the only negated class
        return "must not be empty or only whitespace"
    return message.removeprefix("Value error, ")  # our own validators' messages, without pydantic's label


def unreadable_body(exc: BaseException) -> str:
    """Why the body's bytes could not be read as JSON or a form, in words: what Python's json module
    refuses beyond syntax (nesting, 4,300+ digit integers) and bytes that are not UTF-8, rather than
    Python's own message (which advises calling sys.set_int_max_str_digits)."""
    if isinstance(exc, RecursionError):
        return "the body's JSON nests too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"the body is not valid UTF-8: byte 0x{exc.object[exc.start]:02x} at position {exc.start}"
    if "integer string conversion" in str(exc):  # Python's guard against 4,300+ digit integers
        return "the body's JSON has an integer with too many digits"
    return f"the body is not valid JSON: {exc}"


def _body_problem(item: Mapping[str, Any]) -> str | None:
    """What is wrong with the body as a whole, in words (pydantic names the JSON parser's character
    position as if it were a field, and says "Field required" of a missing body)."""
    kind, loc = item.get("type"), tuple(item.get("loc", ()))
    if kind == "json_invalid":
        position = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        detail = (item.get("ctx") or {}).get("error")
        return f"the body is not valid JSON{position}" + (f": {detail}" if detail else "")
    if loc == ("body",) and kind == "missing":
        return "the body is empty: send a JSON object (content-type: application/json)"
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type"):
        return "the body must be a JSON object sent as content-type: application/json"
    return None


def _branch_rank(message: str) -> int:
    """How much a union branch's error says: 0 a constraint or value error, 1 a type mismatch, 2
    "should be None" (the optional branch's)."""
    if message.endswith("should be None"):
        return 2
    return 1 if message.startswith("Input should be a valid") else 0


def _validation_message(exc: RequestValidationError) -> str:
    # loc + msg only: pydantic's "input" would echo user text into the response. One message per
    # field: a union (str | list[str] | None) reports one error per branch; the branch whose type the
    # input had says what is wrong ("List should have at least 1 item"), a type mismatch of another
    # branch ("Input should be a valid string") does not, and "should be None" helps nobody.
    by_field: dict[str, str] = {}
    for item in exc.errors():
        if (problem := _body_problem(item)) is not None:
            return problem
        field = _field_name(tuple(item.get("loc", ())))
        message = _readable(str(item.get("msg", "invalid")))
        if field not in by_field or _branch_rank(message) < _branch_rank(by_field[field]):
            by_field[field] = message
    if any(_branch_rank(message) < 2 for message in by_field.values()):  # e.g. texts.1's own error
        by_field = {field: message for field, message in by_field.items() if _branch_rank(message) < 2}
    # An error inside a field (q.1) comes from the branch whose type the input had (a list), so the
    # field's own type mismatch (q: "should be a valid string", the other branch's) says nothing.
    by_field = {field: message for field, message in by_field.items()
                if not (_branch_rank(message) == 1 and any(other.startswith(field + ".") for other in by_field))}
    parts = [f"{field}: {message}" if field else message for field, message in list(by_field.items())[:5]]
    more = len(by_field) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def response_for(exc: BaseException) -> tuple[ErrorSpec, JSONResponse]:
    spec = spec_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RequestValidationError):
        message = _validation_message(exc)
    elif isinstance(exc, StarletteHTTPException):
        # FastAPI's 400 "There was an error parsing the body" keeps the reason as its cause.
        parse_error = exc.__cause__ if exc.status_code == 400 else None
        message = unreadable_body(parse_error) if isinstance(parse_error, (ValueError, RecursionError)) else str(
            exc.detail)
        headers.update(exc.headers or {})
    elif spec is INTERNAL:
        message = "internal server error"  # details go to the log, not to the client
    else:
        message = str(exc) or spec.description
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return spec, error_response(spec.status, spec.code, message, headers or None)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    spec, response = response_for(exc)
    if spec is INTERNAL:
        log.error("unhandled error", exc_info=exc)
    metrics = getattr(request.app.state, "metrics", None)
    if spec.reject_reason is not None and metrics is not None:
        metrics.reject(spec.reject_reason)
    return response


def install_error_handlers(app: FastAPI) -> None:
    for exc_class in (*ERROR_TABLE, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_class, handle_error)


def error_responses(*exc_classes: type[BaseException]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route, built from the table so the docs cannot drift from it."""
    from service.api.schemas import ErrorBody  # schemas import nothing from here; avoid a cycle anyway

    by_status: dict[int, list[ErrorSpec]] = {}
    for exc_class in exc_classes:
        spec = ERROR_TABLE[exc_class]
        by_status.setdefault(spec.status, []).append(spec)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, specs in sorted(by_status.items()):
        examples = {
            spec.code: {"summary": spec.description, "value": error_body(spec.code, spec.description)} for spec in specs
        }
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": " / ".join(dict.fromkeys(spec.description for spec in specs)),
            "content": {"application/json": {"examples": examples}},
        }
        if status == 429:
            entry["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
        responses[status] = entry
    return responses
