"""Fixtures shared by the test modules."""
import numpy as np
import pytest


@pytest.fixture
def poisoned_empty(monkeypatch):
    """np.empty returning NaN-filled arrays: any element the code forgets to write shows up."""
    real_empty = np.empty

    def empty(shape, dtype=float, **kwargs):
        out = real_empty(shape, dtype=dtype, **kwargs)
        out.fill(np.nan if np.dtype(dtype).kind == "f" else 77)
        return out

    monkeypatch.setattr(np, "empty", empty)
