"""The serving core: batching scheduler, search strategies and the model Protocol (pure Python + numpy).

Must not import fastapi, onnxruntime, prometheus_client, service.api or service.runtime.
"""

from service.engine.alignment import moses_format, unk_replace, word_alignment, word_weights
from service.engine.batch import DecodeBatch
from service.engine.confidence import confidence
from service.engine.decoding import Advance, BeamSearch, GreedySearch, Hypothesis, Search, length_penalty
from service.engine.errors import (
    DeadlineExceeded,
    Draining,
    EngineError,
    EngineFailure,
    InvalidRequest,
    Overloaded,
)
from service.engine.model import DecoderState, EncoderOutput, Memory, Seq2SeqModel, StepOutput
from service.engine.scheduler import Scheduler
from service.engine.types import (
    BATCHING_MODES,
    MAX_BEAM_SIZE,
    Alternative,
    BatchingMode,
    FinishedRequest,
    SchedulerConfig,
    SchedulerSnapshot,
    SpecialIds,
    StepStats,
    TranslationRequest,
    TranslationResult,
)

__all__ = [
    "BATCHING_MODES",
    "MAX_BEAM_SIZE",
    "Advance",
    "Alternative",
    "BatchingMode",
    "BeamSearch",
    "DeadlineExceeded",
    "DecodeBatch",
    "DecoderState",
    "Draining",
    "EncoderOutput",
    "EngineError",
    "EngineFailure",
    "FinishedRequest",
    "GreedySearch",
    "Hypothesis",
    "InvalidRequest",
    "Memory",
    "Overloaded",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerSnapshot",
    "Search",
    "Seq2SeqModel",
    "SpecialIds",
    "StepOutput",
    "StepStats",
    "TranslationRequest",
    "TranslationResult",
    "confidence",
    "length_penalty",
    "moses_format",
    "unk_replace",
    "word_alignment",
    "word_weights",
]
