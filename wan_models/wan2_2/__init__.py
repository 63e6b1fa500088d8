"""Wan2.2: analytic cost models checked against diffusers, registered as model ``wan2_2``:
T2V-A14B and I2V-A14B (two 14B experts split by the scheduler's timesteps) and TI2V-5B (one DiT
with per-token timesteps and the Wan2.2 VAE). Builders are shared with ``wan_models.wan2_1``.
"""
