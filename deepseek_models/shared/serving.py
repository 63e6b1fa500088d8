"""Serving figures of the DeepSeek OCR models: pages in, tokens out (both packages' ``Page``
workloads are :class:`~deepseek_models.shared.workload.PageBatch`)."""

from __future__ import annotations

from deepseek_models.shared.config import DecoderConfig
from deepseek_models.shared.parallel import data_layout
from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import Runtime, Serving, Stage, StageRuntime


def serving(decoder: DecoderConfig) -> Serving:
    """Vision and prefill before the first token, then one decode step per token; the KV cache
    holds keys and values of every layer (MHA) for each cached token of each page."""

    def new_tokens(w: PageBatch) -> int:
        return w.new_tokens

    def sequences(w: PageBatch) -> int:
        return w.pages

    def context(w: PageBatch) -> int:
        return w.prefill_tokens

    def cache_bytes_per_token(w: PageBatch) -> int:
        return decoder.kv_elements_per_token * w.dtype_bytes

    return Serving(
        first_token=("vision", "prefill"),
        per_token="decode",
        new_tokens=new_tokens,
        sequences=sequences,
        context=context,
        cache_bytes_per_token=cache_bytes_per_token,
        unit="page",
        max_context=decoder.max_positions,
    )


DECODER_STAGES = (
    Stage(
        "prefill",
        0.0,
        "the decoder over prompt and image tokens, logits of the last position",
        memory_tolerance=0.01,
    ),
    Stage(
        "decode",
        0.0,
        "one step per further new token over the KV cache",
        weights_of="prefill",
        memory_tolerance=0.01,
    ),
)
"""The shared decoder's stages, after each model's ``vision``: exact FLOPs, and a memory peak
within 5% (weights dominate it; the part beyond them is not modelled yet)."""


def runtimes() -> dict[str, Runtime]:
    """How the OCR models run: transformers' eager ``generate()`` (bf16, torch SDPA, every kernel
    launched from Python), and a serving engine (bf16, FlashAttention-2, decode steps replayed as
    CUDA graphs). Both keep every weight on the GPU."""
    bf16 = StageRuntime("bf16", "bf16")
    stages = dict.fromkeys(("vision", "prefill", "decode"), bf16)
    batch = "The batch is the workload's pages: a serving engine batches sequences, so size it with --pages."
    return {
        "transformers": Runtime(
            description="transformers generate(), eager, bf16, torch SDPA",
            stages=stages,
            notes=(
                "Eager: every kernel launched from Python; the launch cost is a lower bound (PyTorch's "
                "dispatcher adds host time per op) and counts the modelled kernels only (matmuls, attention, "
                "norms: the decoder's elementwise ops are not predicted yet).",
            ),
        ),
        "served": Runtime(
            description="a serving engine: bf16, FlashAttention-2, decode steps as CUDA graphs",
            stages=stages,
            attention="fa2",
            launch="graphs",
            notes=(
                batch,
                "On N GPUs: N data-parallel replicas, each holding every weight and serving its share of "
                "the pages (figures are the first replica's, with the largest share). --layout tensor=T "
                "(or tT, tTdD) splits the decoder by transformers' tensor-parallel plan instead: heads and "
                "MLP widths over T GPUs, an all-reduce after each split block, the routed experts repeated "
                "on every GPU of the group; OCR-2's vision encoder split the same way, SAM (and v1's CLIP) "
                "run whole on each.",
                "Continuous batching, paged KV cache, speculative decoding, and expert parallelism are not "
                "modelled.",
            ),
            layout=data_layout,
        ),
    }
