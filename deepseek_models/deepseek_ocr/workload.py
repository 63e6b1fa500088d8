"""The workload: pages read by DeepSeek-OCR (v1) in one of its resolution modes, validated at
construction."""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

from deepseek_models.shared.workload import PageBatch, helped
from pytest_flopcheck import WorkloadError

MODES: Final = {"tiny": 512, "small": 640, "base": 1024, "large": 1280, "gundam": 1024}
"""Resolution modes (paper, table 1) and the size of their single (or global) view."""
TILE_SIZE: Final = 640
"""Gundam's local tiles."""
MIN_TILES, MAX_TILES = 2, 9
_TILES = re.compile(r"([1-9])x([1-9])")


def _mode(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in MODES:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(MODES)}")


def _tiles(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if instance.mode != "gundam":
        if value != "none":
            raise WorkloadError(
                attribute.name, value, f"only mode 'gundam' has tiles; mode is {instance.mode!r}"
            )
        return
    match = _TILES.fullmatch(value) if isinstance(value, str) else None
    if match is None or not MIN_TILES <= int(match[1]) * int(match[2]) <= MAX_TILES:
        raise WorkloadError(
            attribute.name,
            value,
            f"mode 'gundam' needs WIDTHxHEIGHT tiles of {TILE_SIZE} px, "
            f"{MIN_TILES} to {MAX_TILES} in all (e.g. 2x3)",
        )


def view_tokens(view: int) -> int:
    """Tokens per side of one view after SAM's 16 px patches and the 4× compressor."""
    return view // 16 // 4


@attrs.frozen(kw_only=True)
class Page(PageBatch):
    """Pages read in resolution ``mode``; Gundam adds ``tiles`` local 640 px tiles
    (WIDTHxHEIGHT) to a 1024 px global view (the batch, prompt and generation fields are
    :class:`PageBatch`'s)."""

    mode: str = attrs.field(
        default="base", validator=_mode, metadata=helped(f"resolution mode: {', '.join(MODES)}")
    )
    tiles: str = attrs.field(
        default="none",
        validator=_tiles,
        metadata=helped("gundam only: WIDTHxHEIGHT tiles of 640 px, 2 to 9 in all (e.g. 2x3)"),
    )

    @property
    def view(self) -> int:
        """Size of the single (or, in Gundam, the global) view."""
        return MODES[self.mode]

    @property
    def tile_grid(self) -> tuple[int, int]:
        """(tiles across, tiles down); (0, 0) without tiles."""
        if self.tiles == "none":
            return (0, 0)
        wide, high = self.tiles.split("x")
        return (int(wide), int(high))

    @property
    def tile_count(self) -> int:
        wide, high = self.tile_grid
        return wide * high

    @property
    def image_tokens(self) -> int:
        """Tokens a page inserts: the view's rows each closed by a newline token, the tiles'
        rows likewise (as one mosaic), and one view separator."""
        side = view_tokens(self.view)
        tokens = (side + 1) * side + 1
        wide, high = self.tile_grid
        if wide:
            tile = view_tokens(TILE_SIZE)
            tokens += (tile * wide + 1) * tile * high
        return tokens

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "view_px": self.view, "tile_count": self.tile_count}


STANDARD_WORKLOADS: Final = {
    "base-short": Page(mode="base", new_tokens=32),
    "base-long": Page(mode="base", new_tokens=256),
    "gundam-short": Page(mode="gundam", tiles="2x3", new_tokens=32),
    "gundam-long": Page(mode="gundam", tiles="2x3", new_tokens=256),
}
"""One 1024 px view (Base), or Gundam's global view with 2×3 tiles (a portrait page); short and
long generations."""
