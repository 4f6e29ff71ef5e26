"""The service state the routes share, and the Annotated dependencies that hand it to them.

One place for what a route may depend on: state, settings, registry, metrics, API-key checks.
Every dependency is `async def`: FastAPI runs a plain `def` one in a worker thread, a thread hop
per dependency per request that cost more than the dependency itself.
HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from service.api.errors import NotReady
from service.api.security import check_admin_key, check_api_key, key_from_headers
from service.engine.errors import Draining
from service.metrics import ServiceMetrics
from service.models import ModelRegistry
from service.settings import Settings


@dataclass(eq=False)
class ServiceState:
    """Built by `create_app`; ready after the lifespan loaded the models, draining after SIGTERM."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    api_keys: list[bytes] = field(repr=False)
    ready: bool = False
    draining: bool = False
    accepted_requests: int = 0  # work requests the edge let in before draining, not yet answered

    def mark_ready(self) -> None:
        self.ready = True
        self.metrics.set_ready(not self.draining)

    def begin_drain(self) -> None:
        """Readiness turns 503 and work routes refuse new requests; in-flight ones continue."""
        self.draining = True
        self.metrics.set_ready(False)

    async def wait_idle(self, timeout_s: float, poll_s: float = 0.02) -> bool:
        """Wait until every accepted work request is answered (True) or `timeout_s` passed (False).

        Requests refused while draining are not counted, so a client hammering the service cannot
        hold the drain open."""
        deadline = time.monotonic() + timeout_s
        while self.accepted_requests > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True


def service_state(request: Request) -> ServiceState:
    """The state, read straight from the app (what StateDep hands a route, without the resolver)."""
    state: ServiceState = request.app.state.service
    return state


async def get_state(request: Request) -> ServiceState:
    return service_state(request)


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_registry(state: StateDep) -> ModelRegistry:
    return state.registry


async def get_metrics(state: StateDep) -> ServiceMetrics:
    return state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


# Route-level checks read the state straight from the request, and a work route has one check that
# does everything: FastAPI's resolver costs measurable event-loop time per dependency per request
# (sub-dependencies, a generator dependency's exit stack, its per-request cache keys).
def _check_serving(state: ServiceState) -> None:
    if state.draining:
        raise Draining("the service is shutting down and accepts no new work")
    if not state.ready:
        raise NotReady("models are still loading")


async def require_serving(request: Request) -> None:
    """Refuse work while draining or before the models are loaded. Marks a route as a work route:
    the edge (service/api/middleware.py) limits such requests in flight and counts them for drain."""
    _check_serving(service_state(request))


async def require_key_and_serving(request: Request) -> None:
    """The API key (401), then `require_serving`: one dependency for the API's work routes."""
    state = service_state(request)
    check_api_key(state.api_keys, key_from_headers(request))
    _check_serving(state)


async def require_admin_key(request: Request) -> None:
    check_admin_key(service_state(request).api_keys, key_from_headers(request))


# Route-level dependencies (no value): `dependencies=[KeyAndServing]`.
Serving = Depends(require_serving)
KeyAndServing = Depends(require_key_and_serving)
AdminKey = Depends(require_admin_key)
WORK_CHECKS = (require_serving, require_key_and_serving)  # what marks a work route (see work_paths)
