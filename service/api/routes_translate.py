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
from service.api.translation import Options, translate_texts

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
    TRANSLATOR_MAX_SOURCE_TOKENS tokens per sentence, TRANSLATOR_MAX_BODY_BYTES per body, and no more
    sentences in all than TRANSLATOR_MAX_QUEUE_REQUESTS. Each text's sentences are decoded side by
    side, up to TRANSLATOR_MAX_SENTENCES_PER_TEXT and the text's share of
    TRANSLATOR_MAX_ROWS_PER_REQUEST (sentences x beam_size over the request); beyond that adjacent
    sentences are grouped. Line breaks between the pieces are kept.
    """
    state = service_state(request)
    options = Options(body.source, body.target, body.beam_size, body.max_length)
    model, texts = await translate_texts(state, request, body.all_texts(), options)
    return TranslateResponse(
        model=ModelRef(name=model.name, version=model.version),
        translations=[Translation(text=text.text, truncated=text.truncated) for text in texts],
    )
