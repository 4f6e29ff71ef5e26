"""GET /v1/models (what is loaded, with evaluation scores) and POST /v1/admin/reload (swap a version).

HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter

from service.api.deps import AdminKey, RegistryDep, StateDep
from service.api.errors import (
    AdminDisabled,
    ModelLoadFailed,
    ModelNotFound,
    RequestValidationError,
    Unauthorized,
    error_responses,
)
from service.api.schemas import ModelInfo, ModelRef, ModelsResponse, ReloadRequest, ReloadResponse
from service.models import LoadedModel

router = APIRouter(tags=["models"])
log = logging.getLogger("service.api.models")


def model_info(loaded: LoadedModel, default: bool, max_source_tokens: int) -> ModelInfo:
    manifest = loaded.manifest
    return ModelInfo(
        name=manifest.name,
        version=manifest.version,
        source_language=manifest.source_language,
        target_language=manifest.target_language,
        attention=manifest.attention,
        variant=loaded.variant,
        quantization="none" if loaded.variant == "fp32" else loaded.variant,
        providers=loaded.providers,
        default=default,
        max_source_tokens=max_source_tokens,
        trained_max_source_tokens=manifest.max_source_tokens,
        evaluation=manifest.evaluation,
    )


@router.get("/v1/models", response_model=ModelsResponse, summary="The loaded models")
async def list_loaded_models(registry: RegistryDep, state: StateDep) -> ModelsResponse:
    default, limit = registry.default, state.settings.max_source_tokens
    return ModelsResponse(models=[model_info(m, m is default, limit) for m in registry.models])


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=error_responses(RequestValidationError, Unauthorized, AdminDisabled, ModelNotFound, ModelLoadFailed),
    dependencies=[AdminKey],
    tags=["admin"],
    summary="Load another version of a model and swap it in",
)
async def reload_model(body: ReloadRequest, registry: RegistryDep) -> ReloadResponse:
    """Always needs an API key (403 when none are configured). The new version is verified, loaded and
    warmed up while the old one serves; requests in flight on the old one finish there. If the new
    version fails to load (409), the old one keeps serving."""
    new, old = await registry.reload(body.name, body.version)
    log.info("reloaded", extra={"model": new.name, "version": new.version, "previous": old.version})
    return ReloadResponse(
        model=ModelRef(name=new.name, version=new.version),
        previous=ModelRef(name=old.name, version=old.version),
    )
