"""Meta kernels' results remembered by their inputs' metadata: rebuilt exactly, never for an op
that mutates or aliases, and invisible in what a count measures."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

torch = pytest.importorskip("torch")

from pytest_flopcheck import ReferenceCall  # noqa: E402
from pytest_flopcheck.reference import meta_results  # noqa: E402
from pytest_flopcheck.reference.counting import count_reference  # noqa: E402
from pytest_flopcheck.reference.meta_results import MetaResults  # noqa: E402

aten = torch.ops.aten


def meta(*shape: int, dtype: Any = None) -> Any:
    return torch.empty(*shape, device="meta", dtype=dtype or torch.bfloat16)


def layout(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.stride(), value.dtype, value.untyped_storage().nbytes())
    if isinstance(value, tuple | list):
        return [layout(v) for v in value]
    return value


CALLS = [
    (aten.add.Tensor, (meta(2, 3), meta(3, dtype=torch.float32)), {}),
    (aten.mul.Tensor, (meta(4, 1, 5), meta(1, 6, 5)), {}),
    (aten.pow.Tensor_Scalar, (meta(8, 16, dtype=torch.float32), 2), {}),
    (aten.mean.dim, (meta(8, 16), [-1], True), {}),
    (aten.addmm.default, (meta(16), meta(4, 8), meta(8, 16)), {}),
    (aten.cat.default, ([meta(2, 3), meta(5, 3)], 0), {}),
    (aten.max.dim, (meta(3, 7), 1), {}),
    (aten._to_copy.default, (meta(2, 3).t(),), {"dtype": torch.float32}),
    (aten._softmax.default, (meta(2, 9, dtype=torch.float32), -1, False), {}),
]


@pytest.mark.parametrize(("func", "args", "kwargs"), CALLS, ids=lambda x: str(x) if callable(x) else "")
def test_a_remembered_result_is_rebuilt_exactly_as_the_kernel_made_it(
    func: Any, args: Any, kwargs: Any
) -> None:
    results = MetaResults()
    first = results.run(func, args, kwargs)
    again = results.run(func, args, kwargs)
    assert results.hits == 1
    assert layout(again) == layout(first) == layout(func(*args, **kwargs))
    if isinstance(first, torch.Tensor):  # a new tensor with a storage of its own
        assert again is not first
        assert again.untyped_storage()._cdata != first.untyped_storage()._cdata


def test_views_mutations_and_tensors_off_meta_always_run() -> None:
    results = MetaResults()
    x = meta(4, 6)
    for _ in range(2):
        assert results.run(aten.view.default, (x, [6, 4]), {}).shape == (6, 4)
        assert results.run(aten.transpose.int, (x, 0, 1), {}).shape == (6, 4)
        results.run(aten.add_.Tensor, (meta(4, 6), x), {})
        assert results.run(aten.add.Tensor, (torch.ones(2), torch.ones(2)), {}).tolist() == [2.0, 2.0]
    assert results.hits == 0
    # the same call on other shapes or dtypes is another call
    results.run(aten.add.Tensor, (meta(2, 3), meta(2, 3)), {})
    results.run(aten.add.Tensor, (meta(2, 4), meta(2, 4)), {})
    results.run(aten.add.Tensor, (meta(2, 3, dtype=torch.float16), meta(2, 3, dtype=torch.float16)), {})
    assert results.hits == 0


def test_a_count_measures_the_same_with_and_without_remembered_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with torch.device("meta"):
        layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True).to(torch.bfloat16)
        x = torch.empty(2, 16, 64, dtype=torch.bfloat16)

    def call() -> ReferenceCall:
        return ReferenceCall(layer, lambda: [layer(x) for _ in range(3)])

    kept = count_reference(call(), "meta")
    monkeypatch.setattr(meta_results.MetaResults, "run", lambda self, f, a, k: f(*a, **k))
    plain = count_reference(call(), "meta")
    assert attrs.evolve(kept, seconds=0) == attrs.evolve(plain, seconds=0)
