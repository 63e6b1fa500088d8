"""A fake process group for counting a parallel reference on one CPU: torch's ``fake`` backend
answers every collective at once with correctly shaped outputs, so the real parallel code
(diffusers' context parallelism, FSDP2) runs its rank-0 share and issues its collectives, which
the counter records with their bytes (:data:`~pytest_flopcheck.reference.counting.COLLECTIVES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pytest_flopcheck.reference.counting import ReferenceSkipped


@contextlib.contextmanager
def fake_process_group(world: int) -> Iterator[None]:
    """Rank 0 of ``world`` ranks on torch's fake backend, for the duration of the block (the
    group is destroyed after it). diffusers picks a rank's device as ``rank % device_count``,
    which is a division by zero on a machine without accelerators: the count reads 1 meanwhile."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise ReferenceSkipped("torch.distributed is not available in this torch build")
    if dist.is_initialized():
        raise ReferenceSkipped("a process group is already initialised in this process")
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    accelerator = torch.accelerator
    original = accelerator.device_count
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    if original() == 0:
        accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        accelerator.device_count = original
        dist.destroy_process_group()
