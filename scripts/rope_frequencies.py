"""The RoPE inverse frequencies a Llama config.json asks for (rope_theta, and rope_scaling: none, linear or
llama3), computed with numpy alone, independently of transformers: the fixture generator checks transformers'
rotary buffer against them, and the precision study rotates with them."""
import math

import numpy as np


def rope_inverse_frequencies(config: dict, head_dim: int) -> np.ndarray:
    """The rotary frequencies transformers' Llama uses for this config's rope_theta and rope_scaling."""
    base = 1.0 / config.get("rope_theta", 10000.0) ** (np.arange(0, head_dim, 2) / head_dim)
    scaling = config.get("rope_scaling") or {}
    # Older configs spell the key "type", newer ones "rope_type".
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return base
    if kind == "linear":
        return base / scaling["factor"]
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        wavelength = 2 * math.pi / base
        smooth = (original / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * base / factor + smooth * base
        # Long wavelengths are stretched by the factor, short ones kept, those in between blended.
        return np.where(wavelength > original / low, base / factor,
                        np.where(wavelength < original / high, base, smoothed))
    raise ValueError(f"rope_scaling type {kind!r} is not one of default, linear, llama3")
