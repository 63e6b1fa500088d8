"""Scaling properties of the DeepSeek-OCR (v1) analytic model (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_models.deepseek_ocr.registration import registration
from deepseek_models.deepseek_ocr.stages import STAGES, stage_tree
from deepseek_models.deepseek_ocr.workload import MODES, Page

modes = st.sampled_from(sorted(set(MODES) - {"gundam"}))
tiles = st.tuples(st.integers(1, 9), st.integers(1, 9)).filter(lambda t: 2 <= t[0] * t[1] <= 9)


@settings(max_examples=25, deadline=None)
@given(mode=modes, pages=st.integers(1, 16), new_tokens=st.integers(2, 600))
def test_every_stage_is_linear_in_pages(mode: str, pages: int, new_tokens: int) -> None:
    one = Page(mode=mode, new_tokens=new_tokens)
    many = Page(mode=mode, pages=pages, new_tokens=new_tokens)
    for stage in STAGES:
        assert stage_tree(many, stage).total.flops == pages * stage_tree(one, stage).total.flops
        assert stage_tree(many, stage).total.params == stage_tree(one, stage).total.params


@settings(max_examples=25, deadline=None)
@given(grid=tiles, new_tokens=st.integers(2, 2000), more=st.integers(1, 500))
def test_more_tokens_or_tiles_never_cost_less(grid: tuple[int, int], new_tokens: int, more: int) -> None:
    w = Page(mode="gundam", tiles=f"{grid[0]}x{grid[1]}", new_tokens=new_tokens)
    longer = Page(mode="gundam", tiles=w.tiles, new_tokens=new_tokens + more)
    assert stage_tree(longer, "decode").total.flops > stage_tree(w, "decode").total.flops
    assert stage_tree(longer, "vision").total == stage_tree(w, "vision").total
    base = Page(mode="base", new_tokens=new_tokens)
    for stage in ("vision", "prefill"):
        assert stage_tree(w, stage).total.flops > stage_tree(base, stage).total.flops


@settings(max_examples=25, deadline=None)
@given(mode=modes, pages=st.integers(1, 64), new_tokens=st.integers(2, 4000))
def test_the_kv_cache_grows_with_pages_and_tokens(mode: str, pages: int, new_tokens: int) -> None:
    spec = registration().serving
    assert spec is not None
    w = Page(mode=mode, pages=pages, new_tokens=new_tokens)
    final = w.prefill_tokens + new_tokens - 1
    assert stage_tree(w, "decode").total.cache_bytes == pages * final * spec.cache_bytes_per_token(w)
