"""The edge every HTTP request passes: request id, admission (in-flight limit), body size and read-time
limits, metrics, access log, and the Server-Timing header a translation route left in the request's state.

Pure ASGI (no BaseHTTPMiddleware) so that the route can still wait on `receive()` for a disconnect.
HTTP edge only: must not import the engine or onnxruntime.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.admission import AdmissionGate
from service.api.deps import ServiceState
from service.api.errors import (
    BodyTimeout,
    ClientDisconnected,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
    response_for,
)
from service.api.logs import client_gone_var, request_id_var

REQUEST_ID_HEADER = "x-request-id"
# Key in the request's state (scope["state"]) under which a route leaves a Server-Timing value (W3C):
# where the engine's time went, e.g. "queue;dur=1.20, encode;dur=2.31, decode;dur=9.87" (ms).
SERVER_TIMING_STATE = "server_timing"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
CLIENT_CLOSED_STATUS = 499  # nginx's "client closed request", as ClientDisconnected answers


def connection_closed(exc: BaseException) -> bool:
    """Whether writing a response failed because the peer's connection is gone: a reset or broken
    pipe, or uvloop's transport refusing to write once closed ("... the handler is closed")."""
    return isinstance(exc, OSError) or "closed" in str(exc)

access_log = logging.getLogger("service.access")


class RequestIds:
    """Unique request ids without a system call per request (uuid4 reads os.urandom every time):
    a random 64-bit prefix per process, so replicas do not collide, then a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


def route_label(scope: Scope, known_paths: frozenset[str] = frozenset()) -> str:
    """The route template (`/v1/translate`), never the raw path, so the label set stays bounded. A
    request refused at the edge never reached the router: its path is its label when it is one of
    `known_paths` (an overloaded /v1/translate is not "unmatched", like a 404)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("path", "") in known_paths:
        return str(scope["path"])
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "unmatched"


class EdgeMiddleware:
    """`work_paths`: the POST routes that translate; they pass `gate` before their body is read."""

    def __init__(self, app: ASGIApp, state: ServiceState, gate: AdmissionGate, work_paths: frozenset[str]) -> None:
        self.app = app
        self.state = state
        self.gate = gate
        self.work_paths = work_paths
        self.request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        head = scope["method"] == "HEAD"
        if head:  # every GET route answers HEAD: the same status and headers, no body
            scope = {**scope, "method": "GET"}  # a copy: the server still knows it as HEAD
        offered_id = headers.get(REQUEST_ID_HEADER, "")
        request_id = offered_id if _REQUEST_ID_OK.match(offered_id) else self.request_ids.next()
        # Set, never reset: the request's task ends with it, and what uvicorn logs about this request
        # after the app returned (an unfinished response) must carry this id, not the one of the
        # request whose task created this one (uvicorn starts a pipelined request from inside the
        # previous request's send, so its task begins with that request's context).
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        client_gone = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, client_gone
            if client_gone:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                extra = [(b"x-request-id", request_id.encode("latin-1"))]
                if timing := scope.get("state", {}).get(SERVER_TIMING_STATE):
                    extra.append((b"server-timing", timing.encode("latin-1")))
                message["headers"] = [*message["headers"], *extra]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            try:
                await send(message)
            except (OSError, RuntimeError) as exc:
                if not connection_closed(exc):
                    raise
                # The client closed the connection before this answer could be written (requests it
                # pipelined behind one it then abandoned): its loss, not a server failure.
                client_gone = True
                client_gone_var.set(True)  # for uvicorn's word on this response (logs.ClientGoneFilter)
                status = CLIENT_CLOSED_STATUS

        admitted = counted = False
        try:
            if scope["method"] == "POST" and scope["path"] in self.work_paths:
                admitted = self.gate.try_enter()
                if not admitted:  # refused before the body is read: cheap exactly when the service is busiest
                    message = f"{self.gate.limit} requests are already in progress; retry after Retry-After seconds"
                    await self._refuse(Overloaded(self.gate.retry_after_s(), message), scope, receive, send_with_id)
                    return
            encoding = headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                await self._refuse(UnsupportedMediaType(f"content-encoding {encoding!r} is not supported: send the "
                                                        "body uncompressed"), scope, receive, send_with_id)
                return
            try:
                async with asyncio.timeout(self.state.settings.body_timeout_s):
                    replay = await self._read_body(headers, receive)
            except (PayloadTooLarge, TimeoutError) as exc:
                refusal = exc if isinstance(exc, PayloadTooLarge) else BodyTimeout(
                    f"the request body did not arrive within {self.state.settings.body_timeout_s:g} s"
                )
                await self._refuse(refusal, scope, receive, send_with_id)
            except ClientDisconnected:
                status = CLIENT_CLOSED_STATUS  # half a body is no request: nothing to answer, nobody to answer
            else:
                # What a drain waits for; one that arrives while draining is refused by the route
                # (require_serving) and not counted, so a client hammering cannot hold the drain open.
                counted = admitted and not self.state.draining
                if counted:
                    self.state.accepted_requests += 1
                await self.app(scope, replay, send_with_id)
        finally:
            if counted:
                self.state.accepted_requests -= 1
            if admitted:
                self.gate.leave()
            duration_s = time.perf_counter() - started
            route = route_label(scope, self.work_paths)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.state.metrics.observe_http(route, method, status, duration_s)
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration_s * 1e3, 2),
                },
            )

    async def _refuse(
        self, exc: Overloaded | PayloadTooLarge | BodyTimeout | UnsupportedMediaType, scope: Scope, receive: Receive,
        send: Send,
    ) -> None:
        """Answer from the error table without running the app. A body that was not read in full also
        closes the connection: its rest would otherwise be read as the next request."""
        spec, response = response_for(exc)
        if spec.reject_reason is not None:
            self.state.metrics.reject(spec.reject_reason)
        if not isinstance(exc, Overloaded):
            response.headers["Connection"] = "close"
        await response(scope, receive, send)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> Receive:
        """Read the whole body up to the limit, then replay it; PayloadTooLarge if it is too large,
        ClientDisconnected if the client leaves before sending all of it.

        Content-Length is checked first so an honest big upload is refused without reading it; the
        streamed count catches chunked bodies and lying headers.
        """
        limit = self.state.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnected("the client disconnected while sending its body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        return replay
