import itertools

import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F


def distinct(shape, seed):
    """Distinct values (a shuffled linspace): near-ties would make finite differences wrong."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(np.linspace(-1, 1, n)).reshape(shape)


def naive_max_pool(x, k, s):
    N, C, H, W = x.shape
    OH, OW = (H - k) // s + 1, (W - k) // s + 1
    y = np.empty((N, C, OH, OW))
    for n, c, i, j in itertools.product(range(N), range(C), range(OH), range(OW)):
        y[n, c, i, j] = x[n, c, i * s:i * s + k, j * s:j * s + k].max()
    return y


@pytest.mark.parametrize("k,s,shape", [(2, 2, (2, 3, 8, 6)), (2, 2, (1, 1, 7, 5)), (3, 2, (2, 2, 7, 9)),
                                       (3, 3, (1, 2, 7, 8)), (4, 4, (1, 1, 9, 8)), (2, 1, (1, 2, 5, 4))])
def test_forward_matches_naive_and_gradcheck(k, s, shape):
    x = distinct(shape, seed=k * 10 + s)
    y = F.max_pool2d(mf.tensor(x, dtype=np.float64), k, s)
    np.testing.assert_array_equal(y.data, naive_max_pool(x, k, s))
    mf.gradcheck(lambda x: F.max_pool2d(x, k, s), [x])


def test_large_windows_up_to_32():
    x = distinct((1, 2, 64, 96), seed=5)
    y = F.max_pool2d(mf.tensor(x, dtype=np.float64), 32)
    np.testing.assert_array_equal(y.data, naive_max_pool(x, 32, 32))
    t = mf.tensor(x, dtype=np.float64, requires_grad=True)
    g = np.random.default_rng(1).standard_normal((1, 2, 2, 3))
    F.max_pool2d(t, 32).backward(g)
    assert np.count_nonzero(t.grad) == 12 and np.isclose(t.grad.sum(), g.sum())


def test_ties_go_to_the_first_index():
    x = mf.tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[3.0]]]]))
    np.testing.assert_array_equal(x.grad[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_bad_input():
    with pytest.raises(ValueError, match="larger than the input"):
        F.max_pool2d(mf.tensor(np.ones((1, 1, 3, 3))), 4)
    with pytest.raises(ValueError, match="4-D"):
        F.max_pool2d(mf.tensor(np.ones((3, 3))), 2)
    with pytest.raises(TypeError, match="max_pool2d: kernel must be integers"):
        F.max_pool2d(mf.tensor(np.ones((1, 1, 4, 4))), 2.5)


def first_max_gradient(x, gy, k):
    """gx of non-overlapping k×k max pooling written from the rule: each window's upstream gradient
    goes to its first maximum in row-major order (np.argmax of the flattened window)."""
    gx = np.zeros_like(x)
    N, C, OH, OW = gy.shape
    for n, c, i, j in itertools.product(range(N), range(C), range(OH), range(OW)):
        window = x[n, c, i * k:(i + 1) * k, j * k:(j + 1) * k]
        p, q = divmod(int(np.argmax(window)), k)
        gx[n, c, i * k + p, j * k + q] = gy[n, c, i, j]
    return gx


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,shape", [(2, (2, 3, 9, 7)), (3, (1, 2, 10, 9)), (4, (1, 3, 9, 13)),
                                     (4, (2, 3, 8, 12)), (8, (1, 2, 17, 16)), (8, (2, 3, 16, 25)),
                                     (16, (2, 2, 33, 35))])
def test_many_ties_go_to_the_first_maximum_in_row_major_order(poisoned_empty, k, shape, dtype):
    # values from {0, 1, 2}: most windows hold several maxima, e.g. at (1, 0) and (0, 1)
    x = np.random.default_rng(k).integers(0, 3, shape).astype(dtype)
    gy = np.random.default_rng(k + 1).standard_normal((shape[0], shape[1], shape[2] // k,
                                                        shape[3] // k)).astype(dtype)
    t = mf.tensor(x, dtype=dtype, requires_grad=True)
    y = F.max_pool2d(t, k)
    y.backward(gy)
    np.testing.assert_array_equal(y.data, naive_max_pool(x, k, k))
    # cropped rows and columns (sizes not divisible by k) get exactly zero
    np.testing.assert_array_equal(t.grad, first_max_gradient(x, gy, k))


@pytest.mark.parametrize("kernel", [(2, 1), (1, 3), (3, 2), (2, 5), (2, 8), (8, 2), (4, 8), (1, 16),
                                    (8, 4)])
def test_rectangular_windows_with_ties(poisoned_empty, kernel):
    # one-column and one-row windows take their own branch of the column-then-row reduction
    kh, kw = kernel
    # 3x4 windows, plus kh − 1 rows and kw − 1 columns that fill none and are cropped
    x = np.random.default_rng(kh * 7 + kw).integers(0, 3, (1, 2, 4 * kh - 1, 5 * kw - 1)).astype(
        np.float64)
    gy = np.random.default_rng(kh + kw).standard_normal((1, 2, 3, 4))
    t = mf.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, kernel)
    y.backward(gy)
    expected_y, expected_gx = np.zeros_like(gy), np.zeros_like(x)
    for n, c, i, j in itertools.product(range(1), range(2), range(3), range(4)):
        window = x[n, c, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw]
        p, q = divmod(int(np.argmax(window)), kw)  # the first maximum in row-major order
        expected_y[n, c, i, j] = window.max()
        expected_gx[n, c, i * kh + p, j * kw + q] = gy[n, c, i, j]
    np.testing.assert_array_equal(y.data, expected_y)
    np.testing.assert_array_equal(t.grad, expected_gx)


@pytest.mark.parametrize("window", [(2, 2), (4, 4), (8, 8), (2, 8), (8, 2)])
def test_any_memory_layout_pools_as_c_order_does(window):
    x = np.random.default_rng(45).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = F.max_pool2d(mf.tensor(x), window).data
    for layout in (np.asfortranarray(x), x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)):
        np.testing.assert_array_equal(F.max_pool2d(mf.tensor(layout), window).data, expected)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 3), (4, 4), (8, 8), (16, 16), (3, 2), (2, 1)])
def test_a_window_holding_nan_pools_to_nan_wherever_the_nan_is(k, s):
    # each route (tournament, column by column, equality, argmax, overlapping) on the window's
    # last value and on one in its middle: a NaN activation must not vanish in pooling
    for offset in (k * k - 1, (k // 2) * k + k // 2):
        x = distinct((1, 2, 2 * k + 1, 2 * k + 3), seed=31)
        p, q = divmod(offset, k)
        x[0, 1, p, q] = np.nan
        y = F.max_pool2d(mf.tensor(x), k, s).data
        expected = naive_max_pool(np.nan_to_num(x, nan=np.inf), k, s)
        expected[np.isinf(expected)] = np.nan
        np.testing.assert_array_equal(y, expected)
        assert np.isnan(y[0, 1, 0, 0]) and not np.isnan(y[0, 0]).any()


@pytest.mark.parametrize("K,S", [(40000, 40000), (33000, 1)])
def test_windows_of_more_than_32767_values_send_the_gradient_to_their_maximum(K, S):
    # the argmax offset used to be kept as int16, which wraps past 32767
    x = np.zeros((1, 1, 1, K + 10))
    x[0, 0, 0, 32800] = 1.0
    t = mf.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, (1, K), (1, S))
    y.backward(np.ones(y.shape))
    expected = np.zeros_like(x)
    expected[0, 0, 0, 32800] = sum(1 for j in range(y.shape[3]) if j * S <= 32800 < j * S + K)
    np.testing.assert_array_equal(t.grad, expected)
