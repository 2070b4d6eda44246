"""FRRN's augmentations (Pohlen et al., CVPR 2017, training details)."""
from __future__ import annotations

import math

import numpy as np

from ..autograd import is_whole_number
from .labels import VOID

__all__ = ["translate", "random_translate", "gamma_from", "random_gamma", "default_max_shift",
           "check_seed"]

SEED_LIMIT = 2 ** 32


def check_seed(seed, owner="seed"):
    """A seed is a whole number in 0..2³² − 1, one 32-bit word of a NumPy seed: NumPy splits a
    larger one into two words, which would overlap the words that follow it where a seed starts a
    list (the synthetic scenes are seeded with [seed, split, frame]). The training streams
    (``minifrrn.seeding``) take the same range."""
    if not is_whole_number(seed) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{owner} must be a whole number in 0..{SEED_LIMIT - 1}, got {seed!r}")
    return int(seed)


def default_max_shift(width):
    """FRRN's translation range at network resolution: ±40 px for B at 1024 wide, ±30 px for A at
    512 wide, straight between the two, 40 px wider still, and the same fraction of the width as
    A's (30/512) below 512. Never falls as the width grows (the fraction alone would give 60 px
    just below 1024 wide, then 40)."""
    if width >= 1024:
        return 40
    if width > 512:
        return round(30 + 10 * (width - 512) / 512)
    return max(1, round(30 * width / 512))


def translate(image, target, dy, dx):
    """Shift image (H, W, 3) and target (H, W) by (dy, dx) pixels: content moves down/right for
    positive shifts. The image is reflection-padded, the target void where the source is outside."""
    H, W = target.shape
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return image, target
    padded_image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") \
        if pad < min(H, W) else np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    padded_target = np.pad(target, pad, mode="constant", constant_values=VOID)
    y0, x0 = pad - dy, pad - dx
    return (padded_image[y0:y0 + H, x0:x0 + W].copy(), padded_target[y0:y0 + H, x0:x0 + W].copy())


def random_translate(image, target, max_shift, rng):
    """Integer shift drawn uniformly per axis from [−max_shift, max_shift]."""
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    return translate(image, target, dy, dx)


def gamma_from(z):
    """γ = log(0.5 + z/√2) / log(0.5 − z/√2)."""
    return math.log(0.5 + z / math.sqrt(2)) / math.log(0.5 - z / math.sqrt(2))


def random_gamma(image, rng):
    """img ← img^γ with z ~ U(−0.05, 0.05)."""
    return np.power(image, np.float32(gamma_from(rng.uniform(-0.05, 0.05))), dtype=np.float32)
