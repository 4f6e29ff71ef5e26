"""POST /v1/attention: a translation with its attention weights, word alignment, or an SVG heatmap.

HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api.attention_svg import render_heatmap_svg
from service.api.deps import KeyAndServing, service_state
from service.api.errors import AttentionUnavailable, error_responses
from service.api.routes_translate import TRANSLATION_ERRORS
from service.api.schemas import AttentionRequest, AttentionResponse, ModelRef
from service.api.translation import Options, attend

router = APIRouter(tags=["translation"])

SVG_MEDIA_TYPE = "image/svg+xml"


@router.post(
    "/v1/attention",
    response_model=AttentionResponse,
    responses={
        **error_responses(*TRANSLATION_ERRORS, AttentionUnavailable),
        200: {
            "content": {SVG_MEDIA_TYPE: {"schema": {"type": "string"}}},
            "description": 'JSON by default; with `"format": "svg"` the heatmap as SVG.',
        },
    },
    dependencies=[KeyAndServing],
    summary="Translate one text and show where the model looked",
)
async def attention(body: AttentionRequest, request: Request) -> AttentionResponse | Response:
    """`weights` has one row per target token and one column per source token (eos included in both);
    `<unk>` in the translation is replaced by the source word it attended to most. 422 if the model
    has no attention."""
    state = service_state(request)
    options = Options(body.source, body.target, body.beam_size, body.max_length)
    result = await attend(state, request, body.text, options)
    weights = [[float(value) for value in row] for row in result.weights]
    if body.format == "svg":
        svg = render_heatmap_svg(result.source_tokens, result.target_tokens, weights)
        return Response(svg, media_type=SVG_MEDIA_TYPE)
    return AttentionResponse(
        model=ModelRef(name=result.model.name, version=result.model.version),
        translation=result.translation,
        source_tokens=result.source_tokens,
        target_tokens=result.target_tokens,
        weights=weights,
        alignment=result.alignment,
        moses=result.moses,
    )
