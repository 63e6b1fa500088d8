"""DeepSeek-OCR-2: analytic cost models, checked against transformers' native implementation.

SAM, the Qwen2-style vision encoder and the projector per view, the MoE language decoder for
prefill and decode (registered as ``deepseek_ocr2``). The decoder and SAM come from
:mod:`deepseek_models.shared`, which DeepSeek-OCR (v1) takes them from too.
"""
