import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F


def test_bilinear_has_the_authors_semantics():
    x = mf.tensor(np.array([0.0, 10.0, 20.0, 40.0]).reshape(1, 1, 1, 4), dtype=np.float64)
    y = F.upsample_bilinear2x(x).data
    np.testing.assert_array_equal(y[0, 0, 0], [0, 5, 10, 15, 20, 30, 40, 40])
    np.testing.assert_array_equal(y[0, 0, 1], y[0, 0, 0])  # a single row is repeated downwards
    col = F.upsample_bilinear2x(mf.tensor(np.array([0.0, 10, 20, 40]).reshape(1, 1, 4, 1),
                                          dtype=np.float64)).data
    np.testing.assert_array_equal(col[0, 0, :, 0], [0, 5, 10, 15, 20, 30, 40, 40])


def test_nearest_copies_blocks():
    x = np.arange(6.0).reshape(1, 1, 2, 3)
    y = F.upsample_nearest2d(mf.tensor(x, dtype=np.float64), 3).data
    for i in range(6):
        for j in range(9):
            assert y[0, 0, i, j] == x[0, 0, i // 3, j // 3]


@pytest.mark.parametrize("op", [lambda x: F.upsample_nearest2d(x, 4), F.upsample_bilinear2x])
def test_adjoint_identity(op):
    # <up(x), y> == <x, up_adjoint(y)>, the adjoint taken by backward with upstream y
    rng = np.random.default_rng(0)
    x = mf.tensor(rng.standard_normal((2, 3, 5, 4)), dtype=np.float64, requires_grad=True)
    up = op(x)
    y = rng.standard_normal(up.shape)
    up.backward(y)
    np.testing.assert_allclose((up.data * y).sum(), (x.data * x.grad).sum(), rtol=1e-12)


@pytest.mark.parametrize("op", [lambda x: F.upsample_nearest2d(x, 2), F.upsample_bilinear2x])
def test_gradcheck(op):
    mf.gradcheck(op, [np.random.default_rng(1).standard_normal((2, 2, 3, 5))])


def test_bad_scale():
    x = mf.tensor(np.ones((1, 1, 2, 2)))
    with pytest.raises(TypeError, match="scale must be an integer"):
        F.upsample_nearest2d(x, 1.5)
    with pytest.raises(ValueError, match="1..32"):
        F.upsample_nearest2d(x, 64)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8, 16, 32])
def test_nearest_gradient_is_the_block_sum_small_and_large_blocks(scale):
    # blocks of 32 take a row-then-column reduction, smaller ones row then column additions
    rng = np.random.default_rng(scale)
    x = mf.tensor(rng.standard_normal((2, 3, 2, 3)), dtype=np.float64, requires_grad=True)
    gy = rng.standard_normal((2, 3, 2 * scale, 3 * scale))
    F.upsample_nearest2d(x, scale).backward(gy)
    expected = np.zeros((2, 3, 2, 3))
    for i in range(2):
        for j in range(3):
            expected[:, :, i, j] = gy[:, :, i * scale:(i + 1) * scale,
                                      j * scale:(j + 1) * scale].sum(axis=(2, 3))
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis", [2, 3, -1])
def test_bilinear_axis_and_its_adjoint_write_into_out(axis):
    from minifrrn.functional.upsample import bilinear2x_axis, bilinear2x_axis_adjoint
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 5))
    y = bilinear2x_axis(x, axis)
    out = np.full(y.shape, np.nan)
    assert bilinear2x_axis(x, axis, out=out) is out
    np.testing.assert_array_equal(out, y)
    g = rng.standard_normal(y.shape)
    gx = bilinear2x_axis_adjoint(g, axis)
    np.testing.assert_allclose((y * g).sum(), (x * gx).sum(), rtol=1e-12)  # <Ax, g> = <x, Aᵀg>
    out = np.full(x.shape, np.nan)
    np.testing.assert_array_equal(bilinear2x_axis_adjoint(g, axis, out=out), gx)
    with pytest.raises(ValueError, match="out must have shape"):
        bilinear2x_axis(x, axis, out=np.empty(x.shape))
