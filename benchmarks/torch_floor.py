"""Counting a reference with torch's own FLOP counter and nothing more: the floor a benchmark
compares pytest-flopcheck's counting (which also tracks traffic and live memory per module) with.
It takes a model package's ``ReferenceCall`` (its ``module`` and the ``run`` to count)."""

from __future__ import annotations

from typing import Any


def count_flops(call: Any) -> int:
    """The FLOPs torch's counter sees in one run of ``call`` (inference, no gradients)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    call.module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        call.run()
    return int(counter.get_total_flops())
