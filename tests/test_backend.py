import numpy as np
import pytest

import minifrrn as mf
from minifrrn import backend


def test_get_array_module_numpy_and_scalars():
    assert mf.get_array_module(np.ones(2), 3.0, None) is np


def test_gpu_available_is_a_bool_and_never_raises():
    assert isinstance(mf.gpu_available(), bool)


def test_gpu_device_without_gpu_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    with pytest.raises(backend.GPUUnavailableError, match="gpu"):
        backend.check_device("gpu")


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.to_device(np.ones(2), "tpu")


def test_to_cpu_is_identity_for_numpy():
    a = np.arange(3.0)
    np.testing.assert_array_equal(backend.to_device(a, "cpu"), a)


def test_emulation_switch_is_scoped(monkeypatch):
    monkeypatch.delenv("MINIFRRN_EMULATE_GPU", raising=False)
    assert not backend.emulation_enabled()
    with backend.emulate_gpu():
        assert backend.emulation_enabled()
        with backend.emulate_gpu(False):
            assert not backend.emulation_enabled()
    assert not backend.emulation_enabled()
    monkeypatch.setenv("MINIFRRN_EMULATE_GPU", "1")
    assert backend.emulation_enabled()
