"""Benchmark: building the DeepSeek decode trees in closed form, at 256 and 4,096 new tokens.

The decode stage is one node per module with one call per step (each step at its own KV
length), built from the first and last step in O(1) in the number of steps. Target: <= 5 ms at
4,096 new tokens. Also prints each model's standard workloads' FLOPs per generation by stage.
Run: python benchmarks/bench_decode_tree.py
"""

from __future__ import annotations

import statistics
import time

import attrs

from deepseek_models.deepseek_ocr import stages as v1_stages
from deepseek_models.deepseek_ocr import workload as v1_workload
from deepseek_models.deepseek_ocr2 import stages as v2_stages
from deepseek_models.deepseek_ocr2 import workload as v2_workload

TARGET_MS = 5.0
MODELS = {
    "deepseek_ocr": (v1_stages, v1_workload.STANDARD_WORKLOADS),
    "deepseek_ocr2": (v2_stages, v2_workload.STANDARD_WORKLOADS),
}


def build_ms(model: str, new_tokens: int) -> float:
    stages, workloads = MODELS[model]
    w = attrs.evolve(next(iter(workloads.values())), new_tokens=new_tokens)
    samples = []
    for _ in range(31):
        start = time.perf_counter()
        stages.stage_tree(w, "decode")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main() -> None:
    for model in MODELS:
        for new_tokens in (256, 4096):
            ms = build_ms(model, new_tokens)
            verdict = "ok" if ms <= TARGET_MS else "OVER TARGET"
            print(
                f"{model:>14} decode tree, {new_tokens:>5,} new tokens: "
                f"{ms:6.2f} ms ({verdict}, target {TARGET_MS} ms)"
            )
    for model, (stages, workloads) in MODELS.items():
        print(f"\n{model}: FLOPs per generation")
        for name, w in workloads.items():
            per_stage = {stage: stages.stage_tree(w, stage).total.flops for stage in stages.STAGES}
            cells = ", ".join(f"{stage} {flops:,}" for stage, flops in per_stage.items())
            print(f"  {name:>13}: {cells}; total {sum(per_stage.values()):,}")


if __name__ == "__main__":
    main()
