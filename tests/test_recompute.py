"""Gradient checkpointing (mf.recompute): same values and gradients, activations not stored."""
import numpy as np

import minifrrn as mf
import minifrrn.functional as F


class TwoLayer:
    """A minimal module: parameters w1, w2 and a buffer counting its forward calls."""

    def __init__(self, rng):
        self.w1 = mf.tensor(rng.standard_normal((3, 4)), dtype=np.float64, requires_grad=True)
        self.w2 = mf.tensor(rng.standard_normal((4, 2)), dtype=np.float64, requires_grad=True)
        self.calls = mf.tensor(np.zeros(1))

    def parameters(self):
        return [self.w1, self.w2]

    def buffers(self):
        return [self.calls]

    def __call__(self, x):
        self.calls.data += 1.0
        return F.relu(x @ self.w1).exp() @ self.w2


def run(use_recompute, seed=0):
    rng = np.random.default_rng(seed)
    block = TwoLayer(rng)
    x = mf.tensor(rng.standard_normal((5, 3)), dtype=np.float64, requires_grad=True)
    upstream = rng.standard_normal((5, 2))
    y = mf.recompute(block, x) if use_recompute else block(x)
    (y * 2.0).backward(upstream)
    return y.data, x.grad, block.w1.grad, block.w2.grad, block.calls.data.copy()


def test_recompute_matches_plain_forward_and_backward():
    plain = run(False)
    checkpointed = run(True)
    for a, b in zip(plain[:4], checkpointed[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # the re-run in backward must not count as a second forward for the buffers
    np.testing.assert_array_equal(plain[4], checkpointed[4])


def test_recompute_gradcheck():
    rng = np.random.default_rng(3)
    block = TwoLayer(rng)
    mf.gradcheck(lambda x: mf.recompute(block, x), [rng.standard_normal((2, 3))],
                 params=block.parameters())


def test_recompute_under_no_grad_is_a_plain_call():
    block = TwoLayer(np.random.default_rng(4))
    with mf.no_grad():
        y = mf.recompute(block, mf.tensor(np.ones((1, 3))))
    assert y.creator is None


def test_an_input_recompute_does_not_use_gets_a_zero_gradient():
    a = mf.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = mf.tensor(np.array([3.0, 4.0]), requires_grad=True)
    mf.recompute(lambda p, q: p * 2.0, a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])
    np.testing.assert_array_equal(b.grad, [0.0, 0.0])


def test_recompute_passes_arguments_that_are_not_tensors_through():
    x = mf.tensor(np.random.default_rng(22).standard_normal(5), requires_grad=True)
    y = mf.recompute(lambda t, k, pad: (t[:k] * t[:k]).sum() + pad, x, 3, 1.0)
    y.backward()
    expected = np.zeros(5)
    expected[:3] = 2 * x.data[:3]
    np.testing.assert_allclose(x.grad, expected)
