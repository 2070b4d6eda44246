"""Independent random streams from one seed.

One ``--seed`` feeds several random draws: the initial weights, the order of every epoch, every
frame's augmentation in every epoch. Each purpose gets a stream of its own, named by a *spawn
key*: ``SeedSequence(seed, spawn_key=(purpose, *counters))``, NumPy's way of deriving independent
streams from one seed, so that a stream depends on (seed, purpose, counters) alone and a resumed
run draws exactly what it would have drawn.

Lists of seed words would not do: NumPy's ``SeedSequence`` mixes its first four words as a block
in which a missing word counts as 0, so ``default_rng([s])``, ``[s, 0]`` and ``[s, 0, 0]`` are one
stream. The order of epoch e drawn from ``[seed, e]`` was then the augmentation of frame 0 in
epoch e (``[seed, e, 0]``), and at epoch 0 also the initial weights (``default_rng(seed)``); with
the synthetic scenes' seed equal to the run's, every frame's augmentation at epoch 0 repeated the
numbers that had drawn a scene. A spawn key always adds words after the first four, so these
streams never meet each other, nor a stream seeded with a list of at most four words (such as
the scenes' [seed, split, frame]).
"""
from __future__ import annotations

import numpy as np

__all__ = ["stream", "WEIGHTS", "ORDER", "AUGMENTATION"]

# the purposes: one word each, never 0 (which would read as a missing word)
WEIGHTS = 1        # a model's initial weights (nn.init.manual_seed)
ORDER = 2          # the order of the training frames in an epoch: counters (epoch,)
AUGMENTATION = 3   # one frame's random shift and gamma in one epoch: counters (epoch, frame)


def stream(seed, purpose, *counters) -> np.random.Generator:
    """The random generator for ``purpose`` (one of the constants above) and ``counters`` (whole
    numbers >= 0, such as the epoch and the frame) under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose, *counters)))
