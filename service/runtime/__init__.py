"""ONNX Runtime adapter implementing service.engine's Seq2SeqModel Protocol.

Imports onnxruntime; must not import fastapi, torch, training or service.api.
"""

from service.runtime.onnx_model import CUDA_UNAVAILABLE, ModelLoadError, OnnxSeq2SeqModel

__all__ = ["CUDA_UNAVAILABLE", "ModelLoadError", "OnnxSeq2SeqModel"]
