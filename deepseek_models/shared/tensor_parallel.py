"""One rank's share of a tensor-parallel split, as transformers' plans split the DeepSeek models'
decoder and OCR-2's vision encoder (no torch). Apart from the analytic models that use it, so
that the vision side, which a workload's image-token count reaches, does not import the decoder's
model (a reference's cache key follows its imports)."""

from __future__ import annotations

from pytest_flopcheck import CostNode, layers


def split(count: int, tensor: int) -> int:
    """Rank 0's share of ``count`` split over ``tensor`` ranks (torch's ``Shard``: the first ranks
    hold ``ceil(count / tensor)``)."""
    return -(-count // tensor)


def all_reduce(node_id: str, rows: int, hidden: int, dtype_bytes: int, tensor: int) -> CostNode:
    """The all-reduce of a row-split block's partial output (``rows`` hidden states of ``hidden``
    elements) over ``tensor`` ranks."""
    note = "tensor parallel: the rank's partial output summed over the group"
    return layers.collective(
        node_id, "all_reduce", group=tensor, local_bytes=rows * hidden * dtype_bytes, note=note
    )
