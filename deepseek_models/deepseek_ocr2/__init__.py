"""DeepSeek-OCR-2: analytic cost models, checked against transformers' native implementation.

In progress. The language decoder (prefill) is modeled and verified module by module; the SAM
and Qwen2-style vision encoders, the projector, multi-view workloads, decode and the model's
registration are not written yet, so ``deepseek_ocr2`` is not registered with pytest-flopcheck.
"""

from deepseek_models.deepseek_ocr2.config import DECODER, DecoderConfig
from deepseek_models.deepseek_ocr2.decoder import decoder_prefill

__all__ = ["DECODER", "DecoderConfig", "decoder_prefill"]
