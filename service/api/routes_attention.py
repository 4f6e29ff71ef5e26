"""POST /v1/attention: a translation with its attention weights, word alignment, or an SVG heatmap.

HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from service.api.attention_svg import render_heatmap_svg
from service.api.deps import KeyAndServing, service_state
from service.api.errors import AttentionUnavailable, PayloadTooLarge, error_responses
from service.api.routes_translate import TRANSLATION_ERRORS
from service.api.schemas import AttentionRequest, AttentionResponse, ModelRef
from service.api.source_text import Options
from service.api.translation import attend

router = APIRouter(tags=["translation"])

SVG_MEDIA_TYPE = "image/svg+xml"
# A heatmap has a cell (~150 bytes of SVG) per target x source token: 20,000 cells is a ~3 MB picture
# of a long paragraph. A 2,000-character text of 500 short sentences made a 407 MB SVG (22 s of CPU,
# 2 GB of memory); its JSON weights are still served.
MAX_SVG_CELLS = 20_000


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
    options = Options(body.source, body.target, body.beam_size, body.max_length, tuple(body.keep),
                      tuple(body.glossary.items()))
    result = await attend(state, request, body.text, options)
    weights = [[float(value) for value in row] for row in result.weights]
    if body.format == "svg":
        cells = len(result.source_tokens) * len(result.target_tokens)
        if cells > MAX_SVG_CELLS:
            raise PayloadTooLarge(f"the heatmap would have {cells} cells ({len(result.target_tokens)} target x "
                                  f"{len(result.source_tokens)} source tokens); at most {MAX_SVG_CELLS} as SVG: "
                                  "send a shorter text or ask for JSON")
        # Off the event loop: a large heatmap takes a while to write, and other requests must not wait.
        svg = await asyncio.to_thread(render_heatmap_svg, result.source_tokens, result.target_tokens, weights)
        return Response(svg, media_type=SVG_MEDIA_TYPE)
    return AttentionResponse(
        model=ModelRef(name=result.model.name, version=result.model.version),
        translation=result.translation,
        truncated=result.truncated,
        confidence=result.confidence,
        source_tokens=result.source_tokens,
        target_tokens=result.target_tokens,
        weights=weights,
        alignment=result.alignment,
        moses=result.moses,
    )
