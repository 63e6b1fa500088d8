"""Wan2.2: analytic cost models checked against diffusers (T2V-A14B: two 14B experts)."""
