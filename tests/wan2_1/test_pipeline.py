"""Pipeline multiplicities observed on a real diffusers WanPipeline (tiny, random, CPU)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from wan_models.wan2_1 import Workload, runs_per_generation

pytestmark = pytest.mark.reference


def tiny_pipeline() -> Any:
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4, "blurry": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    text_encoder = transformers.UMT5EncoderModel(
        transformers.UMT5Config(
            vocab_size=len(vocab),
            d_model=8,
            d_kv=4,
            d_ff=16,
            num_layers=1,
            num_heads=2,
            feed_forward_proj="gated-gelu",
        )
    )
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=4,
        in_channels=4,
        out_channels=4,
        text_dim=8,
        freq_dim=8,
        ffn_dim=16,
        num_layers=1,
        rope_max_seq_len=32,
    )
    vae = diffusers.AutoencoderKLWan(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    return diffusers.WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler
    )


def observe(pipe: Any, *, steps: int, guidance: bool) -> tuple[Counter[str], set[int]]:
    seen: Counter[str] = Counter()
    dit_batches: set[int] = set()

    def count(stage: str) -> Any:
        def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            seen[stage] += 1
            if stage == "diffusion_core":
                dit_batches.add(int(kwargs["hidden_states"].shape[0]))

        return hook

    handles = [
        pipe.text_encoder.register_forward_hook(count("text_encoder"), with_kwargs=True),
        pipe.transformer.register_forward_hook(count("diffusion_core"), with_kwargs=True),
    ]
    decode = pipe.vae.decode

    def counted_decode(*args: Any, **kwargs: Any) -> Any:
        seen["vae_decode"] += 1
        return decode(*args, **kwargs)

    pipe.vae.decode = counted_decode
    try:
        pipe(
            prompt="a cat",
            negative_prompt="blurry",
            height=16,
            width=16,
            num_frames=5,
            num_inference_steps=steps,
            guidance_scale=5.0 if guidance else 1.0,
            max_sequence_length=8,
            output_type="pt",
        )
    finally:
        for handle in handles:
            handle.remove()
        pipe.vae.decode = decode
    return seen, dit_batches


@pytest.mark.parametrize("guidance", [True, False])
def test_pipeline_runs_each_stage_as_the_analytic_pipeline_assumes(guidance: bool) -> None:
    pipe = tiny_pipeline()
    seen, dit_batches = observe(pipe, steps=2, guidance=guidance)
    assert dict(seen) == runs_per_generation(Workload(steps=2, guidance=guidance))
    # cond and uncond are separate batch-1 forwards, not one batch-2 forward
    assert dit_batches == {1}


def test_pipeline_multiplicities_scale_with_steps() -> None:
    seen, _ = observe(tiny_pipeline(), steps=3, guidance=True)
    assert dict(seen) == runs_per_generation(Workload(steps=3))
