"""Which Wan2.2 expert runs at each denoising step, without torch or numpy.

diffusers' ``WanPipeline`` (0.42) runs ``transformer`` (the high-noise expert) while the step's
timestep ``t >= boundary_ratio · num_train_timesteps`` and ``transformer_2`` after. The
timesteps are those of ``UniPCMultistepScheduler`` with flow sigmas: ``np.linspace(1, 1/T,
steps + 1)[:-1]``, shifted by ``shift · s / (1 + (shift − 1) · s)``, the first nudged below 1 by
1e-6, times ``T`` and truncated to int64. The arithmetic below is the same float64 arithmetic
(numpy's linspace is ``start + i · (stop − start) / (num − 1)``), so the step counts are those
of the real scheduler; a test compares them over many steps and shifts.
"""

from __future__ import annotations

TRAIN_TIMESTEPS = 1000


def flow_timesteps(steps: int, shift: float, train_timesteps: int = TRAIN_TIMESTEPS) -> list[int]:
    """The scheduler's integer timesteps for ``steps`` denoising steps at flow ``shift``."""
    start, stop = 1.0, 1.0 / train_timesteps
    step = (stop - start) / steps  # linspace over steps + 1 points, the last one dropped
    sigmas = [i * step + start for i in range(steps)]
    sigmas = [shift * s / (1 + (shift - 1) * s) for s in sigmas]
    if abs(sigmas[0] - 1) < 1e-6:
        sigmas[0] -= 1e-6
    return [int(s * train_timesteps) for s in sigmas]


def expert_steps(steps: int, shift: float, boundary_ratio: float) -> tuple[int, int]:
    """(high-noise steps, low-noise steps) of one generation."""
    boundary = boundary_ratio * TRAIN_TIMESTEPS
    high = sum(1 for t in flow_timesteps(steps, shift) if t >= boundary)
    return high, steps - high
