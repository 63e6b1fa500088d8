"""Workload parts shared by the DeepSeek model packages: validation with one clear sentence per bad
value, and the fields every OCR generation has."""

from __future__ import annotations

from typing import Any, Final

import attrs

from pytest_flopcheck import DTYPES, WorkloadError

DTYPE_BYTES: Final = {name: DTYPES[name].bytes for name in ("fp32", "bf16", "fp16")}
"""The framework's dtypes the OCR models are sized in: transformers runs them in fp32, bf16 or
fp16 (no fp8 path)."""


def at_least(minimum: int) -> Any:
    """An attrs validator: an integer (not a bool) of at least ``minimum``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise WorkloadError(attribute.name, value, f"it must be an integer >= {minimum}")

    return check


def dtype(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: one of :data:`DTYPE_BYTES`."""
    if value not in DTYPE_BYTES:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(DTYPE_BYTES)}")


def helped(text: str) -> dict[str, str]:
    """Field metadata carrying the option help the CLI shows."""
    return {"help": text}


@attrs.frozen(kw_only=True)
class PageBatch:
    """``pages`` pages read together (the batch), a prompt of ``prompt_tokens`` text tokens and
    ``new_tokens`` generated tokens (the first from the prefill, the rest from decode steps). A
    model's workload adds how its pages become image tokens (:attr:`image_tokens`)."""

    pages: int = attrs.field(default=1, validator=at_least(1), metadata=helped("pages per batch"))
    prompt_tokens: int = attrs.field(
        default=16, validator=at_least(1), metadata=helped("text tokens of the prompt")
    )
    new_tokens: int = attrs.field(
        default=256, validator=at_least(2), metadata=helped("tokens to generate (>= 2)")
    )
    dtype: str = attrs.field(
        default="bf16", validator=dtype, metadata=helped("dtype for memory and I/O figures")
    )

    @property
    def image_tokens(self) -> int:
        """Tokens one page inserts into the prompt."""
        raise NotImplementedError

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def prefill_tokens(self) -> int:
        return self.prompt_tokens + self.image_tokens

    @property
    def decode_steps(self) -> int:
        return self.new_tokens - 1

    def describe(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "image_tokens_per_page": self.image_tokens,
            "prefill_tokens": self.prefill_tokens,
            "decode_steps": self.decode_steps,
        }
