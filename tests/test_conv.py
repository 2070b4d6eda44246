"""conv2d: forward against a naive loop, gradients against finite differences, bad input."""
import itertools

import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.functional.conv import col2im, im2col


def naive_conv2d(x, W, b, stride, pad):
    """Straight from the definition: four nested loops, written independently of the library."""
    N, C, H, Wd = x.shape
    OC, _, KH, KW = W.shape
    SH, SW = stride
    PH, PW = pad
    xp = np.zeros((N, C, H + 2 * PH, Wd + 2 * PW))
    xp[:, :, PH:PH + H, PW:PW + Wd] = x
    OH, OW = (H + 2 * PH - KH) // SH + 1, (Wd + 2 * PW - KW) // SW + 1
    y = np.zeros((N, OC, OH, OW))
    for n, o, i, j in itertools.product(range(N), range(OC), range(OH), range(OW)):
        patch = xp[n, :, i * SH:i * SH + KH, j * SW:j * SW + KW]
        y[n, o, i, j] = (patch * W[o]).sum() + (b[o] if b is not None else 0.0)
    return y


MATRIX = [(k, s, p) for k in (1, 3, 5) for s in (1, 2) for p in (0, 1, 2) if k + 2 * p <= 7]


@pytest.mark.parametrize("k,s,p", MATRIX)
def test_forward_matches_naive_loops(k, s, p):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.standard_normal((2, 3, 7, 5 + 2 * (k == 5)))
    W = rng.standard_normal((4, 3, k, k))
    b = rng.standard_normal(4)
    y = F.conv2d(mf.tensor(x, dtype=np.float64), mf.tensor(W, dtype=np.float64),
                 mf.tensor(b, dtype=np.float64), stride=s, pad=p)
    np.testing.assert_allclose(y.data, naive_conv2d(x, W, b, (s, s), (p, p)), rtol=1e-12, atol=1e-12)


def test_per_axis_stride_and_padding_batch1_one_channel():
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal((1, 1, 6, 9)), rng.standard_normal((2, 1, 3, 5))
    y = F.conv2d(mf.tensor(x, dtype=np.float64), mf.tensor(W, dtype=np.float64), stride=(1, 2),
                 pad=(2, 1))
    np.testing.assert_allclose(y.data, naive_conv2d(x, W, None, (1, 2), (2, 1)), atol=1e-12)


def test_non_contiguous_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 7, 3)).transpose(0, 3, 1, 2)  # (2, 3, 5, 7), not contiguous
    W = rng.standard_normal((2, 3, 3, 3))
    assert not x.flags.c_contiguous
    y = F.conv2d(mf.tensor(x, dtype=np.float64), mf.tensor(W, dtype=np.float64), pad=1)
    np.testing.assert_allclose(y.data, naive_conv2d(x, W, None, (1, 1), (1, 1)), atol=1e-12)


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (3, 1, 1), (3, 2, 0), (5, 2, 2), (1, 2, 1)])
def test_gradcheck_every_input(k, s, p):
    rng = np.random.default_rng(k + s + p)
    x = rng.standard_normal((2, 2, 6, 5))
    W = rng.standard_normal((3, 2, k, k))
    b = rng.standard_normal(3)
    mf.gradcheck(lambda x, W, b: F.conv2d(x, W, b, stride=s, pad=p), [x, W, b])


def test_gradcheck_non_contiguous_and_no_bias():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 5, 4, 2)).transpose(0, 3, 2, 1)
    mf.gradcheck(lambda x, W: F.conv2d(x, W, pad=1), [x, rng.standard_normal((2, 2, 3, 3))])


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, 3, 3, 2, 1, 1, 2)
    c = rng.standard_normal(cols.shape)
    lhs = (cols * c).sum()
    rhs = (x * col2im(c, x.shape, 3, 3, 2, 1, 1, 2)).sum()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((np.ones((3, 4, 4)), np.ones((2, 3, 3, 3))), {}, ValueError, "x must be 4-D"),
    ((np.ones((1, 3, 4, 4)), np.ones((2, 4, 3, 3))), {}, ValueError, "3 channels but W expects 4"),
    ((np.ones((1, 3, 2, 2)), np.ones((2, 3, 5, 5))), {}, ValueError, "larger than the padded"),
    ((np.ones((1, 3, 4, 4), np.float16), np.ones((2, 3, 3, 3), np.float16)), {}, TypeError,
     "float32 or float64"),
    ((np.ones((1, 3, 4, 4)), np.ones((2, 3, 3, 3))), {"stride": 0}, ValueError, "stride must be"),
])
def test_bad_input_is_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        F.conv2d(*[mf.tensor(a, dtype=a.dtype) for a in args], **kwargs)


def test_mixed_dtypes_are_rejected_before_any_work():
    with pytest.raises(TypeError, match="x is float64 but the weights are float32"):
        F.conv2d(mf.tensor(np.ones((1, 2, 4, 4))), mf.tensor(np.ones((3, 2, 3, 3), np.float32)))
