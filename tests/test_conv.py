"""conv2d: forward against a naive loop, gradients against finite differences, bad input."""
import itertools

import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.functional import conv as conv_module
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


# --- the banded route (stride 1 on the CPU) ---------------------------------------------------------

@pytest.fixture(params=[("column offsets", 1), ("column offsets", 2), ("band copies", 1),
                        ("band copies", 2)], ids=lambda p: f"{p[0]}, bands of {p[1]}")
def small_bands(request, monkeypatch):
    """Bands of one or two output rows, so that small test shapes run every loop of the route many
    times and end on a shorter band, gx by the adjoint convolution whatever the number of input
    channels, and each variant of the banded route for every shape (kernel columns read in place,
    or whole cols copied)."""
    variant, rows = request.param
    monkeypatch.setattr(conv_module, "_rows_per_band", lambda row_bytes, OH: min(rows, OH))
    monkeypatch.setattr(conv_module, "ADJOINT_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_module, "ADJOINT_MIN_PIXELS_PER_FILTER", 0)
    in_place = variant == "column offsets"
    monkeypatch.setattr(conv_module, "OFFSETS_MIN_INNER", 1 if in_place else 10 ** 9)
    monkeypatch.setattr(conv_module, "OFFSETS_MIN_PIXELS", 1 if in_place else 10 ** 9)


BANDED = [((3, 3), (1, 1)), ((3, 3), (0, 0)), ((5, 5), (2, 2)), ((3, 3), (2, 2)), ((3, 5), (1, 2)),
          ((1, 3), (0, 1)), ((3, 1), (1, 0)), ((3, 3), (0, 2)), ((2, 2), (1, 0))]


def _random_case(seed, kernel, H, W):
    """x (2, 3, H, W), weights (4, 3) + kernel and a bias, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 3, H, W)), rng.standard_normal((4, 3) + kernel),
            rng.standard_normal(4))


@pytest.mark.parametrize("kernel,pad", BANDED)
def test_banded_route_matches_naive_loops(small_bands, poisoned_empty, kernel, pad):
    x, W, b = _random_case(sum(kernel) * 7 + sum(pad), kernel, 7, 6)
    fn = conv_module.Conv2dFunction((1, 1), pad)
    y = fn(mf.tensor(x, dtype=np.float64), mf.tensor(W, dtype=np.float64, requires_grad=True),
           mf.tensor(b, dtype=np.float64))
    assert fn.route == "banded"
    np.testing.assert_allclose(y.data, naive_conv2d(x, W, b, (1, 1), pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,pad", BANDED)
def test_banded_route_gradcheck(small_bands, poisoned_empty, kernel, pad):
    x, W, b = _random_case(sum(kernel) * 11 + sum(pad), kernel, 6, 5)
    mf.gradcheck(lambda x, W, b: F.conv2d(x, W, b, pad=pad), [x, W, b])


def test_banded_route_gradcheck_non_contiguous_input_without_bias(small_bands):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 6, 5, 3)).transpose(0, 3, 1, 2)  # (1, 3, 6, 5), not contiguous
    mf.gradcheck(lambda x, W: F.conv2d(x, W, pad=1), [x, rng.standard_normal((2, 3, 3, 3))])


@pytest.mark.parametrize("kernel,pad", BANDED[:3])
def test_banded_route_gx_by_banded_col2im_for_few_input_channels(monkeypatch, poisoned_empty,
                                                                  kernel, pad):
    assert conv_module.ADJOINT_MIN_CHANNELS > 3  # the default sends these 3-channel inputs to col2im
    monkeypatch.setattr(conv_module, "BAND_BYTES", 1)  # bands of one row: neighbours share rows
    x, W, b = _random_case(sum(kernel) * 13 + sum(pad), kernel, 6, 5)
    mf.gradcheck(lambda x, W, b: F.conv2d(x, W, b, pad=pad), [x, W, b])


def test_gx_route_follows_the_weights_against_the_batch_pixels():
    # FRRN A's 384-filter layers at 16x32, one image: the flipped weights would outweigh col2im
    assert conv_module._gx_by_col2im(416, 384, 16 * 32)
    # the same layer on a batch of 4, and small layers on a batch of 8: the adjoint convolution
    assert not conv_module._gx_by_col2im(384, 384, 4 * 16 * 32)
    assert not conv_module._gx_by_col2im(40, 32, 8 * 16 * 32)
    assert not conv_module._gx_by_col2im(48, 48, 8 * 16)
    # an RGB input, whatever its size
    assert conv_module._gx_by_col2im(3, 48, 8 * 256 * 512)


@pytest.mark.parametrize("kernel,pad", BANDED[:5])
def test_banded_route_gx_by_banded_col2im_for_small_images(monkeypatch, poisoned_empty, kernel,
                                                           pad):
    # as many filters as output pixels: col2im, as for FRRN A's deepest layers
    monkeypatch.setattr(conv_module, "ADJOINT_MIN_PIXELS_PER_FILTER", 10 ** 6)
    monkeypatch.setattr(conv_module, "BAND_BYTES", 1)  # bands of one row: neighbours share rows
    rng = np.random.default_rng(sum(kernel) * 17 + sum(pad))
    x, W = rng.standard_normal((2, 20, 6, 5)), rng.standard_normal((3, 20) + kernel)
    mf.gradcheck(lambda x, W: F.conv2d(x, W, pad=pad), [x, W])


def test_bands_are_as_few_as_fit_and_even():
    # FRRN A's 384-channel layers at 32x64: two bands of 16 rows, not 27 and 5
    row_bytes = 384 * 3 * 66 * 4
    assert conv_module.BAND_BYTES // row_bytes == 27
    assert conv_module._rows_per_band(row_bytes, 32) == 16
    for OH in range(1, 80):
        for most in range(1, 40):  # the most rows a band may hold
            rows = conv_module._rows_per_band(conv_module.BAND_BYTES // most, OH)
            bands = -(-OH // rows)
            assert rows <= most
            assert bands == -(-OH // min(most, OH))  # no more bands than the size demands
            assert OH - (bands - 1) * rows >= rows - (bands - 1)  # the last band is no sliver


def test_banded_route_agrees_with_im2col_on_a_wide_layer(small_bands):
    # many channels, one output channel: the adjoint convolution that gives gx has 1 input channel
    rng = np.random.default_rng(13)
    x, W = rng.standard_normal((2, 16, 5, 4)), rng.standard_normal((1, 16, 3, 3))
    gy = rng.standard_normal((2, 1, 5, 4))
    xt, Wt = mf.tensor(x, requires_grad=True), mf.tensor(W, requires_grad=True)
    F.conv2d(xt, Wt, pad=1).backward(gy)
    cols = conv_module.im2col(x, 3, 3, 1, 1, 1, 1)
    gcols = W.reshape(1, -1).T @ gy.reshape(2, 1, -1)
    np.testing.assert_allclose(xt.grad, conv_module.col2im(gcols, x.shape, 3, 3, 1, 1, 1, 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Wt.grad.reshape(1, -1),
                               sum(gy.reshape(2, 1, -1)[n] @ cols[n].T for n in range(2)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (2, 2)])
def test_adjoint_kernel_is_one_copy_that_both_routes_read_in_place(kernel):
    KH, KW = kernel
    W = np.random.default_rng(16).standard_normal((4, 3) + kernel).astype(np.float32)
    adjoint = conv_module._adjoint_kernel(W)
    np.testing.assert_array_equal(adjoint, W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    assert not np.shares_memory(adjoint, W)
    # column offsets stack its kernel columns (KW·C rows); band copies read it as (C, OC·KH·KW)
    stacked = conv_module._blas_matrix(adjoint.transpose(3, 0, 1, 2), KW * 3, 4 * KH)
    whole = conv_module._blas_matrix(adjoint, 3, 4 * KH * KW)
    for matrix in (stacked, whole):
        assert np.shares_memory(matrix, adjoint)
        assert matrix.flags.c_contiguous or matrix.flags.f_contiguous
    np.testing.assert_array_equal(stacked, np.ascontiguousarray(
        adjoint.transpose(3, 0, 1, 2)).reshape(KW * 3, 4 * KH))


@pytest.mark.parametrize("in_place", [True, False], ids=["column offsets", "band copies"])
def test_banded_conv_takes_weights_of_any_layout(monkeypatch, in_place):
    # weights whose strides make no BLAS matrix (reversed windows) are copied, not misread
    monkeypatch.setattr(conv_module, "_by_column_offsets", lambda *args: in_place)
    rng = np.random.default_rng(17)
    x, W = rng.standard_normal((1, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    reversed_windows = W[:, :, ::-1, ::-1]
    y, _ = conv_module.banded_conv2d(x, reversed_windows, 1, 1)
    np.testing.assert_allclose(y, naive_conv2d(x, reversed_windows, np.zeros(4), (1, 1), (1, 1)),
                               rtol=1e-12, atol=1e-12)


def test_route_choice_and_what_backward_keeps():
    x = np.random.default_rng(14).standard_normal((1, 32, 8, 10)).astype(np.float32)
    wide = conv_module.Conv2dFunction((1, 1), (1, 1))
    wide(mf.tensor(x), mf.tensor(np.ones((8, 32, 3, 3), np.float32), requires_grad=True))
    assert wide.route == "banded"
    # below OFFSETS_MIN_PIXELS: the flattened padded input, not the nine-times larger cols
    assert wide.kept.size == 32 * 10 * 12
    # a larger image reads kernel columns in place: its bands come from x itself, nothing is copied
    big = np.random.default_rng(15).standard_normal((1, 32, 48, 64)).astype(np.float32)
    in_place = conv_module.Conv2dFunction((1, 1), (1, 1))
    in_place(mf.tensor(big), mf.tensor(np.ones((8, 32, 3, 3), np.float32), requires_grad=True))
    assert in_place.route == "banded" and in_place.kept is big
    narrow = conv_module.Conv2dFunction((1, 1), (1, 1))
    narrow(mf.tensor(x[:, :3]), mf.tensor(np.ones((8, 3, 3, 3), np.float32), requires_grad=True))
    strided = conv_module.Conv2dFunction((2, 2), (1, 1))
    strided(mf.tensor(x), mf.tensor(np.ones((8, 32, 3, 3), np.float32), requires_grad=True))
    pointwise = conv_module.Conv2dFunction((1, 1), (0, 0))
    pointwise(mf.tensor(x), mf.tensor(np.ones((8, 32, 1, 1), np.float32), requires_grad=True))
    assert narrow.route == "banded"
    assert strided.route == "im2col" and pointwise.route == "im2col"


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (3, 1, 1), (5, 1, 2), (3, 2, 1)])
def test_an_empty_batch_has_zero_weight_gradients_on_every_route(poisoned_empty, k, s, p):
    # no band and no sample: gW and gb must come out as zeros, not as an unwritten buffer
    x = mf.tensor(np.zeros((0, 3, 6, 5)), requires_grad=True)
    W = mf.tensor(np.random.default_rng(7).standard_normal((4, 3, k, k)), requires_grad=True)
    b = mf.tensor(np.random.default_rng(8).standard_normal(4), requires_grad=True)
    y = F.conv2d(x, W, b, stride=s, pad=p)
    assert y.shape[:2] == (0, 4)
    y.backward(np.zeros(y.shape))
    assert x.grad.shape == (0, 3, 6, 5)
    np.testing.assert_array_equal(W.grad, np.zeros(W.shape))
    np.testing.assert_array_equal(b.grad, np.zeros(4))
