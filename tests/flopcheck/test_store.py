"""The reference store: counts once per run, reuses earlier runs unless told not to, shares a
failure only within its own run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_flopcheck.reference.counting import ModuleCount, ReferenceCounts, ReferenceSkipped
from pytest_flopcheck.reference.store import CACHED, COUNTED, SHARED, CountFailed, ReferenceStore, cache_key

COUNTS = ReferenceCounts(
    device="meta",
    total_flops=2**70,  # exact integers survive the round trip
    total_params=3,
    total_ops={"aten.mm": 2**70},
    modules={
        "": ModuleCount(2**70, 0, 3, 0, {}),
        "proj": ModuleCount(2**70, 2**70, 3, 3, {"aten.mm": 2**70}),
    },
    uncounted_ops={},
    seconds=0.5,
)


class Counter:
    def __init__(self, result: ReferenceCounts | Exception = COUNTS) -> None:
        self.calls = 0
        self.result = result

    def __call__(self) -> ReferenceCounts:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_counts_once_then_reads_back(tmp_path: Path) -> None:
    count = Counter()
    first = ReferenceStore(tmp_path, "run-1")
    assert first.fetch("k", count) == (COUNTS, COUNTED)
    assert ReferenceStore(tmp_path, "run-1").fetch("k", count) == (COUNTS, SHARED)  # another worker
    assert ReferenceStore(tmp_path, "run-2").fetch("k", count) == (COUNTS, CACHED)  # a later run
    assert count.calls == 1


def test_recount_ignores_earlier_runs_but_shares_within_the_run(tmp_path: Path) -> None:
    count = Counter()
    ReferenceStore(tmp_path, "run-1").fetch("k", count)
    assert ReferenceStore(tmp_path, "run-2", reuse=False).fetch("k", count)[1] == COUNTED
    assert ReferenceStore(tmp_path, "run-2", reuse=False).fetch("k", count)[1] == SHARED
    assert count.calls == 2


def test_a_failure_is_shared_within_its_run_only(tmp_path: Path) -> None:
    broken = Counter(RuntimeError("boom"))
    with pytest.raises(CountFailed, match="RuntimeError: boom") as info:
        ReferenceStore(tmp_path, "run-1").fetch("k", broken)
    assert "boom" in info.value.traceback
    with pytest.raises(CountFailed, match="RuntimeError: boom"):
        ReferenceStore(tmp_path, "run-1").fetch("k", broken)  # another worker: not attempted again
    assert broken.calls == 1
    assert ReferenceStore(tmp_path, "run-2").fetch("k", Counter()) == (COUNTS, COUNTED)


def test_skips_pass_through_and_are_not_stored(tmp_path: Path) -> None:
    skip = Counter(ReferenceSkipped("no GPU"))
    for _ in range(2):
        with pytest.raises(ReferenceSkipped):
            ReferenceStore(tmp_path, "run-1").fetch("k", skip)
    assert skip.calls == 2


def test_an_unreadable_entry_is_counted_again(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text("{truncated")
    assert ReferenceStore(tmp_path, "run-1").fetch("k", Counter()) == (COUNTS, COUNTED)


def test_without_a_directory_every_fetch_counts() -> None:
    count = Counter()
    store = ReferenceStore(None, "run-1")
    store.fetch("k", count)
    store.fetch("k", count)
    assert count.calls == 2


def test_the_key_depends_on_every_field() -> None:
    base = {"model": "m", "workload": "W(1)", "stage": "s", "device": "meta", "versions": {"torch": "2.13"}}
    keys = {cache_key(base)} | {cache_key({**base, field: "other"}) for field in base}
    assert len(keys) == 1 + len(base)


def test_an_entry_that_is_not_a_count_is_counted_again_with_one_problem(tmp_path: Path) -> None:
    count = Counter()
    ReferenceStore(tmp_path, "run-1").fetch("k", count)
    entry = tmp_path / "k.json"
    entry.write_text(
        entry.read_text().replace('"total_flops": 1180591620717411303424', '"total_flops": 1e400')
    )
    store = ReferenceStore(tmp_path, "run-2")
    assert store.fetch("k", count) == (COUNTS, COUNTED)
    assert count.calls == 2
    (problem,) = store.problems
    assert "is unusable (field total_flops is inf, not an integer); it was counted again" in problem
    assert ReferenceStore(tmp_path, "run-3").fetch("k", count) == (COUNTS, CACHED)  # rewritten whole


def test_an_unusable_directory_falls_back_to_the_next_candidate(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    store = ReferenceStore.first_usable(
        [(blocked / "cache", "in the cache"), (tmp_path / "run", "of this run")], "r"
    )
    assert store.directory == tmp_path / "run"
    (problem,) = store.problems
    assert problem.startswith(f"the reference cache in the cache ({blocked / 'cache'}) cannot be used")
    assert ReferenceStore.first_usable([(blocked / "cache", "x")], "r").directory is None


def test_a_key_of_none_counts_and_stores_nothing(tmp_path: Path) -> None:
    count = Counter()
    store = ReferenceStore(tmp_path, "run-1")
    assert store.fetch(None, count) == (COUNTS, COUNTED)
    assert store.fetch(None, count) == (COUNTS, COUNTED)
    assert count.calls == 2
    assert not list(tmp_path.iterdir())
