"""GET /healthz (alive), GET /readyz (loaded, warmed up, not draining) and GET /metrics (Prometheus).

HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import StateDep
from service.api.errors import ERROR_TABLE, Draining, NotReady, error_response, error_responses
from service.api.schemas import HealthResponse
from service.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses=error_responses(NotReady, Draining),
    summary="Readiness: models loaded and warmed up, not draining",
)
async def readyz(state: StateDep) -> HealthResponse | Response:
    # Answered directly, not raised: a probe is not a rejected request.
    if state.draining:
        spec = ERROR_TABLE[Draining]
        return error_response(spec.status, spec.code, "draining: finishing in-flight requests before exit")
    if not state.ready:
        spec = ERROR_TABLE[NotReady]
        return error_response(spec.status, spec.code, "models are still loading")
    return HealthResponse(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
    summary="Prometheus metrics",
)
async def metrics(state: StateDep) -> Response:
    state.metrics.observe_snapshots(state.registry.snapshots())
    state.metrics.cache_bytes.set(state.registry.cache_bytes())
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
