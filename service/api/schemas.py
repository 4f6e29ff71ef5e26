"""Request and response bodies of the HTTP API (pydantic), with the static limits and the examples.

Limits that come from settings (text length, texts per request, tokens) are checked in
`service.api.translation`, before any work. HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.engine.types import MAX_BEAM_SIZE

MAX_ALTERNATIVES = MAX_BEAM_SIZE - 1  # the widest beam finishes the best and this many others

LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0 are integers; true, "3" and 3.5 are not (the model is strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
# At least one character that is not whitespace, with whitespace spelled out as ECMAScript's `\s`
# (the regex dialect of JSON Schema's `pattern`): pydantic's Rust regex and Python's `re` also count
# U+0085 and U+001C-U+001F as whitespace, so a bare `\S` would reject text the schema documents as valid.
# Unanchored, like JSON Schema's `pattern`.
NOT_ONLY_WHITESPACE = "[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
Text = Annotated[
    StrictStr,
    StringConstraints(pattern=NOT_ONLY_WHITESPACE),
    Field(description="Text to translate; not empty or only spaces."),
]


MAX_KEEP_TERMS = 64  # and as many glossary entries
MAX_KEEP_TERM_CHARS = 200  # a kept or glossary term, and a glossary translation
KeepTerm = Annotated[StrictStr, StringConstraints(pattern=NOT_ONLY_WHITESPACE, max_length=MAX_KEEP_TERM_CHARS)]


def _glossary_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of the glossary as validated: every key a term, every value a term. Pydantic writes
    the key's pattern as patternProperties, which leaves keys that do not match it (an empty one)
    unconstrained, values and all."""
    value = schema.pop("patternProperties", {}).get(NOT_ONLY_WHITESPACE)
    if value is not None:
        schema["additionalProperties"] = value
        schema["propertyNames"] = {"pattern": NOT_ONLY_WHITESPACE, "maxLength": MAX_KEEP_TERM_CHARS}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `overloaded`.")
    message: str = Field(description="What went wrong, in words.")


class ErrorBody(BaseModel):
    """The one shape of every error response."""

    error: ErrorDetail


class TranslationOptions(BaseModel):
    # strict: JSON `true` or "3" is not an integer, as the documented schema says.
    model_config = ConfigDict(extra="forbid", strict=True)

    source: LanguageCode | None = Field(None, description="ISO 639-1 source language; default: the default model's.")
    target: LanguageCode | None = Field(None, description="ISO 639-1 target language; default: the default model's.")
    beam_size: JsonInt = Field(1, ge=1, le=MAX_BEAM_SIZE, description="1 = greedy; 2-8 = beam search.")
    # Constraints before the validator, or pydantic writes them into the JSON Schema as "ge"/"le". The
    # upper limit is TRANSLATOR_MAX_OUTPUT_TOKENS, checked with the other limits (translation.check_limits)
    # and written into the served OpenAPI document: a fixed one here answered "at most 1024" for 1025
    # when the limit was 256.
    max_length: Annotated[int, Field(ge=1), BeforeValidator(_json_integer)] | None = Field(
        None, description="Most target tokens per sentence; default: from the sentence's length."
    )
    keep: Annotated[list[KeepTerm], Field(max_length=MAX_KEEP_TERMS)] = Field(
        default_factory=list,
        description="Words or phrases to carry over exactly as written wherever they occur as whole words "
                    "(product names, menu commands, code), as addresses and fragile numbers are; at most "
                    f"{MAX_KEEP_TERMS} of at most {MAX_KEEP_TERM_CHARS} characters, case-sensitive.",
    )
    glossary: Annotated[dict[KeepTerm, KeepTerm], Field(max_length=MAX_KEEP_TERMS)] = Field(
        default_factory=dict,
        json_schema_extra=_glossary_schema,
        description="Source term -> its translation, written as given wherever the term occurs as a whole "
                    "word (company terminology, product vocabulary): the term reaches the model as an unknown "
                    "word and its translation takes the place where the model copies it, uninflected (German "
                    f"articles and cases around it are the model's). At most {MAX_KEEP_TERMS} entries of at most "
                    f"{MAX_KEEP_TERM_CHARS} characters each side, case-sensitive. Normalised as the texts are: an "
                    "entry with no text left is ignored, of two that become one term the later counts, and a term "
                    "also in `keep` is translated as given here.",
    )


class TranslateRequest(TranslationOptions):
    """Exactly one of `text` or `texts`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
            "examples": [
                {"text": "The house is small.", "source": "en", "target": "de"},
                {"texts": ["Good morning.", "Where is the station?"], "beam_size": 4},
            ],
        },
    )

    alternatives: JsonInt = Field(
        0, ge=0, le=MAX_ALTERNATIVES,
        description="How many other translations to return per text besides the best: the next best the beam "
                    "finished (the beam is widened to at least alternatives + 1), fewer when it finished fewer.",
    )
    # SkipJsonSchema: null is not part of the documented API, only the "absent" default.
    text: Text | SkipJsonSchema[None] = None
    texts: Annotated[list[Text], Field(min_length=1)] | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _one_of(self) -> TranslateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class ModelRef(BaseModel):
    name: str
    version: str


TRUNCATED_DESCRIPTION = ("True when a sentence of the text was stopped at its length limit (`max_length`, or "
                         "by default 2 x its source tokens + 10) where the model would have gone on: the "
                         "translation is cut short.")


CONFIDENCE_DESCRIPTION = ("How sure the model was: the geometric mean of the probabilities it gave the tokens it "
                          "wrote, over the text's sentences, between 0 and 1; null for a text with nothing to "
                          "translate. It ranks translations by quality (the lower, the likelier a wrong one: "
                          "README \"Confidence\"); it is not a probability of being right.")


ALTERNATIVES_DESCRIPTION = ("Other translations, best first, when `alternatives` asked for them: hypotheses the beam "
                            "finished that write every address, number and term the translation had to keep (fewer "
                            "when it finished fewer; none equals `text` or another); for a text of several sentences, "
                            "the k-th puts together each sentence's k-th alternative, or its translation where it "
                            "has none.")


class Translation(BaseModel):
    text: str
    truncated: bool = Field(description=TRUNCATED_DESCRIPTION)
    confidence: float | None = Field(description=CONFIDENCE_DESCRIPTION)
    alternatives: list[str] = Field(description=ALTERNATIVES_DESCRIPTION)


class TranslateResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "en-de", "version": "1"},
                    "translations": [{"text": "Das Haus ist klein.", "truncated": False, "confidence": 0.83,
                                      "alternatives": []}],
                }
            ]
        }
    )

    model: ModelRef
    translations: list[Translation] = Field(description="One per input text, in input order.")


class AttentionRequest(TranslationOptions):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"text": "The house is small."}, {"text": "Hello world", "format": "svg"}]},
    )

    text: Text
    format: Literal["json", "svg"] = Field("json", description="`svg`: the heatmap as an SVG image.")


class AttentionResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "en-de", "version": "1"},
                    "translation": "Hallo Welt",
                    "truncated": False,
                    "confidence": 0.78,
                    "source_tokens": ["▁Hello", "▁world", "</s>"],
                    "target_tokens": ["▁Hallo", "▁Welt", "</s>"],
                    "weights": [[0.9, 0.08, 0.02], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8]],
                    "alignment": [[0, 0], [1, 1]],
                    "moses": "0-0 1-1",
                }
            ]
        }
    )

    model: ModelRef
    translation: str = Field(description="The translation, with <unk> replaced by the most-attended source word.")
    truncated: bool = Field(description=TRUNCATED_DESCRIPTION)
    confidence: float | None = Field(description=CONFIDENCE_DESCRIPTION)
    source_tokens: list[str] = Field(description="Source pieces, then the end-of-sentence token.")
    target_tokens: list[str] = Field(description="Generated pieces, then the end-of-sentence token.")
    weights: list[list[float]] = Field(
        description="One row per target token, one column per source token; each row sums to 1."
    )
    alignment: list[tuple[int, int]] = Field(description="Word-level [source_index, target_index] pairs.")
    moses: str = Field(description="The same alignment in Moses `i-j` form.")


class ModelInfo(BaseModel):
    name: str
    version: str
    source_language: str
    target_language: str
    attention: str
    variant: str = Field(description="Graph variant served: `fp32` or `int8`.")
    quantization: str = Field(description="`none` for fp32, else the variant.")
    providers: list[str] = Field(description="ONNX Runtime execution providers of the sessions.")
    default: bool = Field(description="Used when a request names no language pair.")
    max_source_tokens: int = Field(
        description="Most source tokens a sentence may have, end-of-sentence token included (longer: 413); "
                    "TRANSLATOR_MAX_SOURCE_TOKENS.")
    trained_max_source_tokens: int = Field(
        description="The longest source the model was trained on (tokens): longer sentences are accepted up to "
                    "max_source_tokens but translate less well.")
    evaluation: dict[str, dict[str, dict[str, float]]] = Field(
        description="variant -> test set -> metric -> value, from the manifest."
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"name": "en-de", "version": "2"}]}
    )

    name: StrictStr = Field(min_length=1, max_length=200)
    version: StrictStr | None = Field(None, min_length=1, max_length=200, description="Default: the newest.")


class ReloadResponse(BaseModel):
    model: ModelRef
    previous: ModelRef


class LibreTranslateRequest(BaseModel):
    """LibreTranslate's /translate body (JSON or form fields); unknown fields are ignored like upstream."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"q": "Hello world", "source": "en", "target": "de", "format": "text"}]},
    )

    q: Text | Annotated[list[Text], Field(min_length=1)]
    source: Annotated[str, StringConstraints(pattern=r"^([a-z]{2}|auto)$")] = "auto"
    target: LanguageCode
    format: Literal["text", "html"] = "text"  # html: text nodes translated, markup kept (service/api/html_text.py)
    api_key: StrictStr | None = None
    # As LibreTranslate: other translations of each text (none for html). Strict: a JSON number (a
    # form's digits are turned into one by the route), not true or "3", as the schema says.
    alternatives: Annotated[int, Field(ge=0, le=MAX_ALTERNATIVES, strict=True), BeforeValidator(_json_integer)] = 0

    def all_texts(self) -> list[str]:
        return [self.q] if isinstance(self.q, str) else list(self.q)


class LibreTranslateResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"translatedText": "Hallo Welt"}]})

    translatedText: str | list[str]
    # Only when `alternatives` asked for them (as LibreTranslate): one list per text for a list `q`
    alternatives: list[str] | list[list[str]] | SkipJsonSchema[None] = None


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


class HealthResponse(BaseModel):
    status: str


def document_limits(
    openapi: dict[str, Any],
    *,
    max_text_chars: int,
    max_texts: int,
    max_output_tokens: int,
    sources: list[str],
    targets: list[str],
) -> dict[str, Any]:
    """Write the configured limits and the served languages into the generated OpenAPI document,
    so that clients (and the schema fuzzer) see what the routes enforce. Token limits cannot be
    expressed in JSON Schema and stay a documented 413."""

    def limit_text(schema: dict[str, Any]) -> None:
        schema["maxLength"] = max_text_chars

    def limit_list(schema: dict[str, Any]) -> None:
        schema["maxItems"] = max_texts
        limit_text(schema["items"])

    def languages(schema: dict[str, Any], codes: list[str], extra: tuple[str, ...] = ()) -> None:
        if not codes:  # no model loaded yet: keep the generic ISO 639-1 pattern
            return
        plain = next((s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"), schema)
        plain.pop("pattern", None)
        plain["enum"] = sorted(codes) + list(extra)

    components = openapi.get("components", {}).get("schemas", {})
    for name in ("TranslateRequest", "AttentionRequest"):
        properties = components.get(name, {}).get("properties", {})
        if not properties:
            continue
        limit_text(properties["text"])
        if "texts" in properties:
            limit_list(properties["texts"])
        properties["max_length"]["anyOf"][0]["maximum"] = max_output_tokens
        languages(properties["source"], sources)
        languages(properties["target"], targets)
    libre = openapi.get("paths", {}).get("/translate", {}).get("post", {}).get("requestBody", {})
    for content in libre.get("content", {}).values():
        properties = content["schema"]["properties"]
        text_schema, list_schema = properties["q"]["anyOf"]
        limit_text(text_schema)
        limit_list(list_schema)
        languages(properties["source"], sources, ("auto",))
        languages(properties["target"], targets)
    return openapi
