"""The workload: pages of a document read by DeepSeek-OCR-2, validated at construction."""

from __future__ import annotations

from typing import Any, Final

import attrs

from deepseek_models.deepseek_ocr2.vision import image_tokens
from deepseek_models.validation import DTYPE_BYTES, WorkloadError, at_least, helped
from deepseek_models.validation import dtype as _dtype

MAX_CROPS: Final = 9


def _crops(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CROPS:
        raise WorkloadError(attribute.name, value, f"it must be an integer from 0 to {MAX_CROPS}")


@attrs.frozen(kw_only=True)
class Page:
    """``pages`` pages read together (the batch), each as one 1024 px global view and ``crops``
    768 px crops; a prompt of ``prompt_tokens`` text tokens; ``new_tokens`` generated tokens
    (the first from the prefill, the rest from decode steps)."""

    pages: int = attrs.field(default=1, validator=at_least(1), metadata=helped("pages per batch"))
    crops: int = attrs.field(default=0, validator=_crops, metadata=helped("768 px crops per page (0 to 9)"))
    prompt_tokens: int = attrs.field(
        default=16, validator=at_least(1), metadata=helped("text tokens of the prompt")
    )
    new_tokens: int = attrs.field(
        default=256, validator=at_least(2), metadata=helped("tokens to generate (>= 2)")
    )
    dtype: str = attrs.field(
        default="bf16", validator=_dtype, metadata=helped("dtype for memory and I/O figures")
    )

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def image_tokens(self) -> int:
        return image_tokens(self.crops)

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


STANDARD_WORKLOADS: Final = {
    "single-short": Page(crops=0, new_tokens=32),
    "single-long": Page(crops=0, new_tokens=256),
    "crops-short": Page(crops=6, new_tokens=32),
    "crops-long": Page(crops=6, new_tokens=256),
}
"""One 1024 px view, or a global view with 6 crops; short and long generations."""
