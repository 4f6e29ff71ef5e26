"""POST /v1/translate: one text or a list of texts, translated in input order.

HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import KeyAndServing, service_state
from service.api.errors import (
    BodyTimeout,
    DeadlineExceeded,
    Draining,
    EngineFailure,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    RequestValidationError,
    Unauthorized,
    UnsupportedLanguagePair,
    error_responses,
)
from service.api.schemas import ModelRef, TranslateRequest, TranslateResponse, Translation
from service.api.source_text import Options
from service.api.translation import translate_texts

router = APIRouter(tags=["translation"])

TRANSLATION_ERRORS = (
    RequestValidationError,
    UnsupportedLanguagePair,
    InvalidInput,
    PayloadTooLarge,
    BodyTimeout,
    Unauthorized,
    Overloaded,
    EngineFailure,
    Draining,
    DeadlineExceeded,
)


@router.post(
    "/v1/translate",
    response_model=TranslateResponse,
    responses=error_responses(*TRANSLATION_ERRORS),
    dependencies=[KeyAndServing],
    summary="Translate one text or several",
)
async def translate(body: TranslateRequest, request: Request) -> TranslateResponse:
    """Texts of one request are scheduled concurrently and answered in input order.

    Limits (413): TRANSLATOR_MAX_TEXTS_PER_REQUEST texts, TRANSLATOR_MAX_TEXT_CHARS characters and
    TRANSLATOR_MAX_SOURCE_TOKENS tokens per sentence, TRANSLATOR_MAX_BODY_BYTES per body,
    TRANSLATOR_MAX_SENTENCES_PER_TEXT sentences and lines per text and TRANSLATOR_MAX_ROWS_PER_REQUEST
    decoder rows (sentences x beam_size) in all. Each text's sentences and lines are decoded side by
    side, each as a row of its own, and come back where they were. A sentence this model version has
    translated before with the same options comes from its translation cache (TRANSLATOR_CACHE_MB;
    its Server-Timing phases are 0), one repeated within the request is decoded once.
    """
    state = service_state(request)
    options = Options(body.source, body.target, body.beam_size, body.max_length, tuple(body.keep),
                      tuple(body.glossary.items()), body.alternatives)
    model, texts = await translate_texts(state, request, body.all_texts(), options)
    return TranslateResponse(
        model=ModelRef(name=model.name, version=model.version),
        translations=[Translation(text=text.text, truncated=text.truncated, confidence=text.confidence,
                                  alternatives=text.alternatives) for text in texts],
    )
