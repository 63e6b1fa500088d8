"""Wan2.1 text-, image- and first-last-frame-to-video: analytic cost models of the UMT5 encoder,
the CLIP ViT-H image encoder, the diffusion transformer and the Wan-VAE encode and decode,
registered with pytest-flopcheck as model ``wan2_1``.

Importing this package does not import torch: only :mod:`wan_models.wan2_1.reference` does.
"""

from wan_models.wan2_1.config import (
    T2V_1_3B,
    T2V_14B,
    UMT5_XXL,
    VARIANTS,
    WAN_VAE,
    ConfigError,
    load_dit_config,
)
from wan_models.wan2_1.pipeline import STAGES, pipeline_tree, runs_per_generation, stage_tree
from wan_models.wan2_1.workload import STANDARD_WORKLOADS, Workload

__all__ = [
    "STAGES",
    "STANDARD_WORKLOADS",
    "T2V_1_3B",
    "T2V_14B",
    "UMT5_XXL",
    "VARIANTS",
    "WAN_VAE",
    "ConfigError",
    "Workload",
    "load_dit_config",
    "pipeline_tree",
    "runs_per_generation",
    "stage_tree",
]
