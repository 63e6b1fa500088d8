"""The workload: pages of a document read by DeepSeek-OCR-2, validated at construction."""

from __future__ import annotations

from typing import Any, Final

import attrs

from deepseek_models.deepseek_ocr2.vision import image_tokens
from deepseek_models.shared.workload import PageBatch, helped
from pytest_flopcheck import WorkloadError

MAX_CROPS: Final = 9


def _crops(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CROPS:
        raise WorkloadError(attribute.name, value, f"it must be an integer from 0 to {MAX_CROPS}")


@attrs.frozen(kw_only=True)
class Page(PageBatch):
    """Pages read by DeepSeek-OCR-2, each as one 1024 px global view and ``crops`` 768 px crops
    (the batch, prompt and generation fields are :class:`PageBatch`'s)."""

    crops: int = attrs.field(default=0, validator=_crops, metadata=helped("768 px crops per page (0 to 9)"))

    @property
    def image_tokens(self) -> int:
        return image_tokens(self.crops)


STANDARD_WORKLOADS: Final = {
    "single-short": Page(crops=0, new_tokens=32),
    "single-long": Page(crops=0, new_tokens=256),
    "crops-short": Page(crops=6, new_tokens=32),
    "crops-long": Page(crops=6, new_tokens=256),
}
"""One 1024 px view, or a global view with 6 crops; short and long generations."""
