"""LibreTranslate-compatible POST /translate (JSON or form-encoded) and GET /languages.

Existing LibreTranslate clients work unchanged; errors keep the service's one error shape.
HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from service.api.deps import RegistryDep, Serving, StateDep
from service.api.errors import InvalidInput, UnsupportedMediaType, error_responses, unreadable_body
from service.api.html_translation import translate_html
from service.api.routes_translate import TRANSLATION_ERRORS
from service.api.schemas import Language, LibreTranslateRequest, LibreTranslateResponse
from service.api.security import check_api_key, key_from_headers
from service.api.source_text import Options
from service.api.translation import translate_texts

router = APIRouter(tags=["libretranslate"])

LANGUAGE_NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "hu": "Hungarian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BODY_SCHEMA = LibreTranslateRequest.model_json_schema()
_SINGLE_FIELDS = frozenset(LibreTranslateRequest.model_fields) - {"q"}
_INTEGER_FIELDS = frozenset({"alternatives"})
MAX_FORM_FIELDS = 1000  # as Starlette's form parser allows


async def _read_fields(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            return json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # ValueError: also JSONDecodeError and UnicodeDecodeError
            raise InvalidInput(unreadable_body(exc)) from None
    if media_type == FORM_TYPES[0]:
        return _url_encoded_fields(await request.body())
    if media_type in FORM_TYPES:  # multipart/form-data
        # Strictly UTF-8, as the other forms: Starlette reads a part that is not UTF-8 as latin-1 (cp1252
        # quotes became C1 controls in the translation). Files are refused, so the whole body is text.
        body = await request.body()  # read once; request.form() parses these bytes
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(unreadable_body(exc)) from None
        form = await request.form()
        return _fields(form.multi_items())
    raise UnsupportedMediaType(f"send application/json, {FORM_TYPES[0]} or {FORM_TYPES[1]}, not "
                               f"{media_type or 'no content type'!r}")


def _url_encoded_fields(body: bytes) -> dict[str, Any]:
    """An application/x-www-form-urlencoded body's fields, strictly UTF-8: Starlette's form parser
    turns bytes that are not UTF-8 into U+FFFD, and the text would be translated without them."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(unreadable_body(exc)) from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"a form field is not valid UTF-8: percent-encoded byte 0x{exc.object[exc.start]:02x} "
                           f"at position {exc.start} of the field") from None
    except ValueError:  # parse_qsl's "Max number of fields exceeded"
        raise InvalidInput(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    return _fields(pairs)


def _fields(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, list[Any]] = {}
    for key, value in items:
        fields.setdefault(key, []).append(value)
    for key, values in fields.items():
        if any(isinstance(value, UploadFile) for value in values):
            raise InvalidInput(f"field {key!r} must be text, not a file")
        # A repeated `q` is a list of texts, as LibreTranslate reads it; the other fields once
        # (unknown ones are ignored, as in JSON).
        if len(values) > 1 and key in _SINGLE_FIELDS:
            raise InvalidInput(f"field {key!r} is given {len(values)} times; only q may repeat")
    return {key: _form_value(key, values[0]) if len(values) == 1 else values for key, values in fields.items()}


def _form_value(key: str, value: Any) -> Any:
    """A form has only text: an integer field's decimal digits are its integer (JSON sends a number)."""
    if key in _INTEGER_FIELDS and isinstance(value, str) and value.isascii() and value.isdecimal():
        return int(value)
    return value


@router.post(
    "/translate",
    response_model=LibreTranslateResponse,
    response_model_exclude_none=True,  # `alternatives` only when asked for
    responses=error_responses(*TRANSLATION_ERRORS, UnsupportedMediaType),
    dependencies=[Serving],
    summary="LibreTranslate-compatible translation",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _BODY_SCHEMA},
                FORM_TYPES[0]: {"schema": _BODY_SCHEMA},
            },
        }
    },
)
async def libre_translate(request: Request, state: StateDep) -> LibreTranslateResponse:
    """`q` is a string or a list of strings; `translatedText` has the same form. `source` may be
    `auto` (the default model for `target`). The API key may be sent as `api_key` or as a header."""
    fields = await _read_fields(request)
    if not isinstance(fields, dict):
        raise InvalidInput("the body must be a JSON object with q and target, or a form with those fields")
    offered = fields.get("api_key")
    check_api_key(state.api_keys, offered if isinstance(offered, str) and offered else key_from_headers(request))
    try:
        body = LibreTranslateRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None
    source = None if body.source == "auto" else body.source
    if body.format == "html":  # as LibreTranslate: no alternatives for markup
        _, texts = await translate_html(state, request, body.all_texts(), Options(source=source, target=body.target))
        alternatives: list[list[str]] = [[] for _ in texts]
    else:
        options = Options(source=source, target=body.target, alternatives=body.alternatives)
        _, translations = await translate_texts(state, request, body.all_texts(), options)
        texts = [translation.text for translation in translations]
        alternatives = [translation.alternatives for translation in translations]
    single = isinstance(body.q, str)
    return LibreTranslateResponse(
        translatedText=texts[0] if single else texts,
        alternatives=None if not body.alternatives else alternatives[0] if single else alternatives)


@router.get("/languages", response_model=list[Language], summary="LibreTranslate-compatible language list")
async def languages(registry: RegistryDep) -> list[Language]:
    """Every language served, each with the languages it translates into; one that is only translated
    into is listed too (with no targets), so that a client can name every target it is offered."""
    targets: dict[str, set[str]] = {}
    for loaded in registry.models:
        targets.setdefault(loaded.source_language, set()).add(loaded.target_language)
        targets.setdefault(loaded.target_language, set())
    return [Language(code=code, name=LANGUAGE_NAMES.get(code, code), targets=sorted(codes))
            for code, codes in targets.items()]
