"""The gradient checker itself: it must catch wrong backwards, and report the worst element."""
import numpy as np
import pytest

import minifrrn as mf
from minifrrn.autograd import Function


class IgnoresUpstream(Function):
    """y = 3x with a backward that ignores its upstream gradient: passes a sum() check."""

    def forward(self, x):
        return 3 * x

    def backward(self, gy):
        return np.full_like(gy, 3.0)


class TransposesUpstream(Function):
    """y = x * w (w a fixed matrix) with a backward that transposes gy."""

    def __init__(self, w):
        self.w = w

    def forward(self, x):
        return x * self.w

    def backward(self, gy):
        return (gy * self.w).T.copy()


def x_data(seed=0, shape=(3, 3)):
    return np.random.default_rng(seed).standard_normal(shape)


def test_sum_check_would_pass_the_wrong_backward():
    # the reason for random upstream gradients: with gy = 1 this backward is right
    x = mf.tensor(x_data(), requires_grad=True)
    IgnoresUpstream()(x).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((3, 3), 3.0))


def test_gradcheck_catches_a_backward_that_ignores_upstream():
    with pytest.raises(mf.GradcheckError, match=r"FAILED.*input0\[") as info:
        mf.gradcheck(lambda x: IgnoresUpstream()(x), [x_data()])
    report = info.value.report
    assert not report.ok and len(report.worst_index) == 2
    assert report.rel_error > 1e-2


def test_gradcheck_catches_a_transposed_backward():
    w = x_data(seed=1)
    with pytest.raises(mf.GradcheckError):
        mf.gradcheck(lambda x: TransposesUpstream(w)(x), [x_data(seed=2)])


def test_directional_mode_catches_it_too():
    with pytest.raises(mf.GradcheckError, match="directional"):
        mf.gradcheck(lambda x: IgnoresUpstream()(x), [x_data(seed=3)], mode="directional")


def test_gradcheck_casts_float32_inputs_to_float64():
    seen = []

    def fn(x):
        seen.append(x.dtype)
        return x * x

    report = mf.gradcheck(fn, [x_data(seed=4).astype(np.float32)])
    assert report.ok and set(seen) == {np.dtype(np.float64)}


def test_gradcheck_returns_a_report_when_asked_not_to_raise():
    report = mf.gradcheck(lambda x: IgnoresUpstream()(x), [x_data(seed=5)], raise_on_failure=False)
    assert not report.ok and "FAILED" in report.summary()


def test_gradcheck_checks_params_and_restores_them():
    w = mf.tensor(x_data(seed=6, shape=(3,)).astype(np.float32), requires_grad=True)
    report = mf.gradcheck(lambda x: x * w, [x_data(seed=7)], params=[w])
    assert report.ok and report.checked == 9 + 3
    assert w.dtype == np.float32 and w.grad is None


def test_integer_inputs_pass_through_unchecked():
    labels = np.array([0, 2, 1])
    report = mf.gradcheck(lambda x, idx: x[np.arange(3), idx.data], [x_data(seed=8), labels])
    assert report.ok and report.checked == 9


def test_gradcheck_refuses_to_pass_when_there_is_nothing_to_check():
    x = np.random.default_rng(5).standard_normal(3)
    with pytest.raises(TypeError, match="fn returned a ndarray, not a Tensor"):
        mf.gradcheck(lambda x: np.exp(x.data), [x])  # a graph-less result: nothing was checked
    with pytest.raises(TypeError, match="fn returned a NoneType"):
        mf.gradcheck(lambda x: None, [x])
    with pytest.raises(TypeError, match="inputs must be a list .* pass \\[x\\]"):
        mf.gradcheck(mf.functional.exp, x)
    with pytest.raises(ValueError, match="nothing to check"):
        mf.gradcheck(lambda labels: mf.tensor(np.ones(2)) * 2, [np.arange(3)])


def test_a_modules_parameter_passed_again_in_params_is_checked_once():
    # a correct network: listing its parameters in params too must not fail the directional check
    rng = np.random.default_rng(8)
    net = mf.nn.Conv2d(2, 3, 3)
    x = rng.standard_normal((1, 2, 5, 5))
    report = mf.gradcheck(net, [x], params=net.parameters(), mode="directional")
    assert report.ok
    elementwise = mf.gradcheck(net, [x], params=net.parameters())
    assert elementwise.checked == mf.gradcheck(net, [x]).checked
