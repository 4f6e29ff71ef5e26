"""create_app(settings): the one place where the service is wired together.

The lifespan verifies and loads the models, warms them up, starts their schedulers and only then
marks the service ready; on shutdown it drains them. Importing this module builds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service.api import (
    routes_attention,
    routes_health,
    routes_libretranslate,
    routes_models,
    routes_translate,
)
from service.api.admission import AdmissionGate
from service.api.deps import WORK_CHECKS, ServiceState
from service.api.errors import install_error_handlers
from service.api.middleware import EdgeMiddleware
from service.api.schemas import document_limits
from service.metrics import ServiceMetrics
from service.models import ModelLoader, ModelRegistry, load_onnx_model
from service.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI's own files (a Swagger UI 5 that reads OpenAPI 3.1), shipped in the fastapi-offline wheel: /docs
# loads nothing from a CDN, so it works offline. Only the files are used, not its FastAPI factory.
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
log = logging.getLogger("service.app")

DESCRIPTION = """English->German translation with an LSTM + attention model served by ONNX Runtime,
with step-level continuous batching. Every error has the shape `{"error": {"code", "message"}}`.
When API keys are configured, send one as `Authorization: Bearer KEY` or `X-API-Key: KEY`."""


def work_paths(routers: Iterable[APIRouter]) -> frozenset[str]:
    """Paths of the POST routes that do translation work (those with a check of WORK_CHECKS):
    the ones the edge's in-flight limit applies to. The routers are included without a prefix."""
    paths: set[str] = set()
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute) or "POST" not in (route.methods or ()):
            continue
        if any(dependant.call in WORK_CHECKS for dependant in route.dependant.dependencies):
            if "{" in route.path:
                raise ValueError(f"work route {route.path} has path parameters; the edge matches exact paths")
            paths.add(route.path)
    return frozenset(paths)


def create_app(settings: Settings, *, model_loader: ModelLoader = load_onnx_model,
               on_started: Callable[[], None] | None = None) -> FastAPI:
    """The ASGI app for `settings`; `model_loader` lets tests serve a fake model instead of ONNX.
    `on_started` runs once the models are loaded, just before the service turns ready (the process's
    entry point uses it for process-wide tuning that must see the loaded models)."""
    metrics = ServiceMetrics()
    registry = ModelRegistry(settings, metrics, model_loader)
    state = ServiceState(settings=settings, registry=registry, metrics=metrics, api_keys=settings.all_api_keys())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await registry.start()
        except Exception as exc:
            log.error("start-up failed: %s", exc)
            await registry.stop()
            raise
        if on_started is not None:
            on_started()
        state.mark_ready()
        log.info("ready", extra={"models": [f"{m.name}@{m.version}" for m in registry.models]})
        try:
            yield
        finally:
            state.begin_drain()
            await registry.drain(settings.drain_timeout_s)
            await registry.stop()
            log.info("stopped")

    app = FastAPI(
        title="Attention translator",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI / ReDoc from a CDN: /docs is served below instead
        redoc_url=None,
    )
    app.state.service = state
    app.state.metrics = metrics
    install_error_handlers(app)
    modules = (routes_translate, routes_attention, routes_models, routes_libretranslate, routes_health)
    routers = [module.router for module in modules]
    for router in routers:
        app.include_router(router)
    gate = AdmissionGate(settings.max_inflight_requests)
    metrics.track_inflight(lambda: gate.in_flight)
    app.add_middleware(EdgeMiddleware, state=state, gate=gate, work_paths=work_paths(routers))

    def openapi() -> dict[str, Any]:
        # Built on first use (after start-up), so the served languages and limits are the real ones.
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = document_limits(
            get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes),
            max_text_chars=settings.max_text_chars,
            max_texts=settings.max_texts_per_request,
            max_output_tokens=settings.max_output_tokens,
            sources=sorted({m.source_language for m in registry.models}),
            targets=sorted({m.target_language for m in registry.models}),
        )
        if registry.models:
            app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Relative URLs, as the page at / uses: they resolve against /docs's folder, so the docs work under
        # a path prefix too (a proxy that strips it).
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} - API documentation",
            swagger_js_url="docs/static/swagger-ui-bundle.js",
            swagger_css_url="docs/static/swagger-ui.css",
            swagger_favicon_url="docs/static/favicon.png",
        )

    app.mount("/docs/static", StaticFiles(directory=SWAGGER_UI_DIR), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
