"""DeepSeek-OCR-2: analytic cost models, checked against transformers' native implementation.

SAM, the Qwen2-style vision encoder and the projector per view, the MoE language decoder for
prefill and decode (registered as ``deepseek_ocr2``). ``decoder`` and ``vision.sam`` are shared
with DeepSeek-OCR (v1), whose decoder and SAM are the same modules.
"""

from deepseek_models.deepseek_ocr2.config import DECODER, DecoderConfig
from deepseek_models.deepseek_ocr2.decoder import decoder_prefill

__all__ = ["DECODER", "DecoderConfig", "decoder_prefill"]
