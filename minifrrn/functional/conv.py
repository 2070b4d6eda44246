"""2-D convolution (cross-correlation) through im2col + GEMM, and col2im for the backward.

Notation: x (N, C, H, W), W (OC, C, KH, KW), b (OC,), stride (SH, SW), zero padding (PH, PW),
output y (N, OC, OH, OW) with OH = (H + 2·PH − KH) // SH + 1 and OW likewise.

    y[n, o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x_pad[n, c, i·SH + p, j·SW + q]

im2col gathers, for every output position, the C·KH·KW input values it sees into one column:
cols (N, C·KH·KW, OH·OW). The convolution is then one matrix product per image,
``y[n] = W.reshape(OC, C·KH·KW) @ cols[n]``, which lands directly in the (OC, OH·OW) = NCHW layout:
no transpose of the output is needed, and BLAS does the work. The gradients are matrix products too:

    gW  = Σ_n gy[n] @ cols[n]ᵀ                    (OC, C·KH·KW)
    gb  = Σ_{n, i, j} gy[n, :, i, j]
    gcols[n] = Wᵀ @ gy[n]                          (C·KH·KW, OH·OW), and gx = col2im(gcols)

col2im is the adjoint of im2col: every column entry is added back to the input pixel it came from.
A 1×1 convolution with stride 1 and no padding needs no im2col at all (cols is x itself).

On the CPU, a stride-1 convolution takes the *banded* route to the same products. Written whole,
cols is KH·KW times the size of x: writing it to memory, and reading it back in the GEMM and in
col2im, costs about as much as the GEMMs themselves on a memory-bound CPU. So cols is built for one
band of output rows at a time, a few MB that stay in the cache, and each band goes straight into its
GEMM, which writes those rows of y:

    y[n][:, band] = Wm @ cols_band,     cols_band = the windows of output rows i0 … i0 + r − 1

The windows are a strided view of the zero-padded input (flattened per channel), copied into one
reused buffer. On wide layers (C·KH ≥ 32, 2048 output pixels or more) a band copies less: with the
padded rows flattened (width Wp = W + 2·PW), the cols rows of kernel column q are the same input
rows q elements further on, so each band's rows are copied once per kernel row p, a matrix of C·KH
rows; W[:, :, :, q] @ (those rows, q further on) is (W[:, :, :, q] @ rows), q further on, so one
GEMM of the KW kernel columns stacked (KW·OC rows, inner size C·KH) gives KW blocks whose sum, each
shifted by its q, is the band's output on the padded width; the Wp − OW columns that straddle the
padding are dropped.

gW sums gy[n][:, band] @ cols_bandᵀ over the bands, from what forward keeps (the size of x, not of
cols: on wide layers x itself, whose band rows are copied with their padding written as zeros, and
the shift moves to KW shifted copies of gy, stacked for one GEMM again; elsewhere x padded); gx is
the convolution of gy with the flipped, transposed kernel Wᵀ[:, :, ::-1, ::-1]
padded by K − 1 − P, by the banded route too, with no col2im (that kernel is one copy of W laid out
filter by filter, which the banded GEMMs read in place as a transposed operand: ``_adjoint_kernel``).
For inputs of few channels (the RGB
stem) that adjoint GEMM would have only C rows, and where the weights are large beside the batch's
pixels (FRRN A's 384-filter layers at 16×32, one image) the adjoint's flipped copy of the weights
outweighs col2im's additions, so gx is Wᵀ·gy followed by col2im instead, also band by band.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, int_pair, unwrap as _data
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu
from . import cpu_parallel as par

__all__ = ["conv2d", "Conv2dFunction", "im2col", "col2im", "banded_conv2d", "conv_output_size"]

_FLOATS = (np.float32, np.float64)

BAND_BYTES = 1 << 23  # rows per band: about 8 MiB of cols or input rows (of 1-32 MiB, the fastest)
# gx by the adjoint convolution needs a GEMM with one row per input channel: with fewer than this
# (the 3-channel stem) it runs far below BLAS speed, and Wᵀ·gy followed by col2im, band by band,
# is faster
ADJOINT_MIN_CHANNELS = 16
# ... and when the weights are large beside the batch's pixels: the adjoint's flipped, transposed
# copy of the weights (OC·C·KH·KW values) outweighs col2im's additions (KH·KW·C per output pixel)
# below this many output pixels, over the whole batch, per filter. Measured, gx alone, adjoint /
# col2im: 416->384 at 16x32, batch 1 (1.3 pixels per filter), 1.17 (the layer's fwd+bwd went from
# 1.41-1.45 to 1.32 of its GEMM floor); 2.7 pixels per filter (48->48 at 8x16, 192->192 at 16x32,
# 384->384 at 16x32 in a batch of 2), 0.80-1.02; 5.3 and more, 0.55-0.97 (224->384 at 32x64, 1.11,
# the one exception); the synthetic main job's layers at 16x32 and 8x16 in batches of 8, 0.54-0.69.
# With the adjoint kernel made in one cache-friendly copy (``_adjoint_kernel``), 416->384 and
# 384->384 at 16x32, batch 1, still took 1.05-1.07 of the col2im route's fwd+bwd time
ADJOINT_MIN_PIXELS_PER_FILTER = 2
# the banded route reads kernel columns in place above both: below, its GEMM of inner size C·KH
# loses more than the copies save (measured fwd+bwd, in place / whole cols: the RGB stem, inner
# size 15, 3.4x; 384->384 and 416->384 at 16x32, 1.2x; at 32x64 and above, 0.74-0.99x), so each
# band's cols is copied whole there
OFFSETS_MIN_INNER = 32
OFFSETS_MIN_PIXELS = 2048


def conv_output_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x, KH, KW, SH, SW, PH, PW):
    """Gather x (N, C, H, W) into cols (N, C·KH·KW, OH·OW), rows ordered (c, p, q)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    if PH or PW:
        x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    sN, sC, sH, sW = x.strides
    # a strided view (N, C, KH, KW, OH, OW) of the padded input; copying it out is the one pass
    windows = xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, KH, KW, OH, OW), strides=(sN, sC, sH, sW, sH * SH, sW * SW))
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    if xp is not np:
        cols[...] = windows
    else:
        def copy_channels(c0, c1):
            cols[:, c0:c1] = windows[:, c0:c1]
        par.over_channels(copy_channels, cols, cache_blocked=False)
    return cols.reshape(N, C * KH * KW, OH * OW)


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """Adjoint of im2col: add every entry of cols (N, C·KH·KW, OH·OW) back into its input pixel."""
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    cols = cols.reshape(N, C, KH, KW, OH, OW)
    gx = xp.zeros((N, C, H + 2 * PH + SH - 1, W + 2 * PW + SW - 1), dtype=cols.dtype)

    def add_channels(c0, c1):
        # the KH·KW additions into gx[:, c0:c1] run back to back while that block is in cache
        block = gx[:, c0:c1]
        for p in range(KH):
            for q in range(KW):
                block[:, :, p:p + SH * OH:SH, q:q + SW * OW:SW] += cols[:, c0:c1, p, q]

    if xp is not np:
        add_channels(0, C)
    else:
        par.over_channels(add_channels, gx, elements=cols.size)
    return gx[:, :, PH:PH + H, PW:PW + W]


def _use_banded(xp, KH, KW, SH, SW, PH, PW):
    """Whether the banded route applies: NumPy, stride 1, a real window, and padding below the
    kernel (so the transposed convolution that gives gx needs no negative padding)."""
    return xp is np and SH == SW == 1 and KH * KW > 1 and PH < KH and PW < KW


def _flat_padded(x, PH, PW):
    """x (N, C, H, W) zero-padded and flattened per channel: (N, C, Hp·Wp), rows of width
    Wp = W + 2·PW one after the other (the layout the band windows are strided views of)."""
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * PH, W + 2 * PW
    flat = np.empty((N, C, Hp * Wp), dtype=x.dtype)
    grid = flat.reshape(N, C, Hp, Wp)
    # zero the border only: filling the whole array first would cost one more pass over it
    grid[:, :, :PH] = 0
    grid[:, :, PH + H:] = 0
    grid[:, :, PH:PH + H, :PW] = 0
    grid[:, :, PH:PH + H, PW + W:] = 0
    grid[:, :, PH:PH + H, PW:PW + W] = x
    return flat


def _rows_per_band(row_bytes, OH):
    """Output rows per band: as few bands as keep each within about BAND_BYTES (at least one row
    each), and the OH rows shared out evenly among them. Filling bands to the brim would leave a
    thin last band (FRRN A's 384-channel layers at 32x64: 27 rows, then 5), whose GEMM runs
    slower per row and whose fixed costs buy less work."""
    most = max(1, min(OH, BAND_BYTES // row_bytes))
    bands = -(-OH // most)
    return -(-OH // bands)


def _band_starts(N, OH, rows):
    """(n, i0, r) for every band of ``rows`` output rows of every image; the last may be shorter."""
    for n in range(N):
        for i0 in range(0, OH, rows):
            yield n, i0, min(rows, OH - i0)


def _row_bands(N, OH, C, KH, KW, Wp, dtype):
    """Every band of output rows, as (n, i0, r, buffer): rows i0 … i0 + r − 1 of image n, and one
    reused buffer (C, KH, rows·Wp + KW − 1) for the input rows a band reads, about BAND_BYTES,
    laid out as ``_copy_band_rows`` fills it."""
    rows = _rows_per_band(C * KH * Wp * np.dtype(dtype).itemsize, OH)
    # zeros: the padding columns of every row are written here once (``_copy_band_rows`` writes
    # only the pixels; zeroing them per band, one element per row, cost as much as the copy saves)
    buffer = np.zeros((C, KH, rows * Wp + KW - 1), dtype=dtype)
    for n, i0, r in _band_starts(N, OH, rows):
        yield n, i0, r, buffer


def _copy_band_rows(buffer, x, n, i0, r, KW, PH, PW):
    """Fill ``buffer`` with what output rows i0 … i0 + r − 1 of image n read, and return it as the
    matrix (C·KH, rows·Wp + KW − 1): its row (c, p) is the padded rows i0 + p … i0 + p + r − 1 of
    channel c flattened (each row PW zeros, W pixels, PW zeros; rows in the padding all zeros), then
    KW − 1 zeros, read only by the dropped columns. Its columns q … q + r·Wp − 1 are then the cols
    rows of kernel column q, in place (module docstring). The pixels come straight from x: a padded
    copy of x would cost one more pass over it. The padding columns are zero from ``_row_bands``
    and never written; rows in the padding and the tail are zeroed here."""
    C, KH, length = buffer.shape
    H, W = x.shape[2:]
    Wp = W + 2 * PW
    padded = buffer[:, :, :r * Wp].reshape(C, KH, r, Wp)  # a view: only the last axis is split
    for p in range(KH):
        top = i0 + p - PH  # the row of x that band row 0 reads at kernel row p
        lo = min(r, max(0, -top))  # band rows lo … hi − 1 read rows of x, the others padding
        hi = max(lo, min(r, H - top))
        padded[:, p, :lo, PW:PW + W] = 0
        padded[:, p, hi:, PW:PW + W] = 0
        padded[:, p, lo:hi, PW:PW + W] = x[n, :, top + lo:top + hi]
    buffer[:, :, r * Wp:r * Wp + KW - 1] = 0
    return buffer.reshape(C * KH, length)


def _band_windows(flat, n, i0, r, C, KH, KW, Wp, OW):
    """The im2col columns of output rows i0 … i0+r−1 of image n, as a strided view (C, KH, KW, r, OW)
    of the flattened padded input: entry (c, p, q, i, j) is padded pixel (i0+i+p, j+q)."""
    step = flat.strides[2]
    return np.lib.stride_tricks.as_strided(
        flat[n, :, i0 * Wp:], shape=(C, KH, KW, r, OW),
        strides=(flat.strides[1], Wp * step, step, Wp * step, step))


def _bands(N, OH, OW, CKK, dtype):
    """Every band of output rows, as (n, i0, r, buffer): rows i0 … i0 + r − 1 of image n, and one
    reused buffer of CKK·r·OW elements for the band's (g)cols, about BAND_BYTES."""
    rows = _rows_per_band(CKK * OW * np.dtype(dtype).itemsize, OH)
    band = np.empty(CKK * rows * OW, dtype=dtype)
    for n, i0, r in _band_starts(N, OH, rows):
        yield n, i0, r, band[:CKK * r * OW]


def _blas_matrix(array, rows, cols):
    """``array`` as a (rows, cols) matrix that BLAS reads in place: a view where its strides
    allow one laid out by rows or by columns (BLAS takes the second as a transposed operand: for
    the adjoint GEMM of 384->384 at 32x64, as fast to within the noise), else a contiguous copy."""
    matrix = array.reshape(rows, cols)  # a view where the strides allow it, else a copy
    if matrix.flags.c_contiguous or matrix.flags.f_contiguous:
        return matrix
    return np.ascontiguousarray(matrix)


def _adjoint_kernel(W):
    """The kernel of gx's convolution, Wᵀ[c, o, p, q] = W[o, c, KH − 1 − p, KW − 1 − q], as a
    (C, OC, KH, KW) view of one copy of W laid out (OC, KH, KW, C) with the window reversed.

    That copy moves each filter's C·KH·KW values with long, cache-friendly loops (every output
    row of C values gathered from one filter's C·KH·KW values), and both banded routes read the view
    as a matrix with no further copy: column offsets as (KW·C, OC·KH), band copies as
    (C, OC·KH·KW), each laid out by columns. Copying Wᵀ contiguous instead swaps the filter and
    channel axes value by value, 3 values at a time: for 384×384×3×3 weights out of cache, 4.0 ms
    then 1.1 more for the stacked copy of the column-offset route, against 1.0 ms for this one
    (a plain copy of the weights takes 0.6)."""
    OC, C, KH, KW = W.shape
    window_reversed = W.reshape(OC, C, KH * KW)[:, :, ::-1].transpose(0, 2, 1)
    return np.ascontiguousarray(window_reversed).reshape(OC, KH, KW, C).transpose(3, 0, 1, 2)


def _conv_by_column_offsets(x, W, PH, PW):
    """The banded forward with each band's input rows copied once per kernel row (KH copies of
    every input value) and the KW kernel columns applied to them in place. W[:, :, :, q] @ (rows,
    q further on) is (W[:, :, :, q] @ rows), q further on: so one GEMM of the KW kernel columns
    stacked (KW·OC rows, inner size C·KH) serves them all, and the band's output is the sum of its
    KW blocks, each shifted by its q."""
    N, C, H, Wd = x.shape
    OC, _, KH, KW = W.shape
    Wp = Wd + 2 * PW
    OH, OW = H + 2 * PH - KH + 1, Wp - KW + 1
    W_stacked = _blas_matrix(W.transpose(3, 0, 1, 2), KW * OC, C * KH)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    products = total = None
    for n, i0, r, buffer in _row_bands(N, OH, C, KH, KW, Wp, x.dtype):
        rows = _copy_band_rows(buffer, x, n, i0, r, KW, PH, PW)
        width = r * Wp  # the band's outputs on the padded width: Wp − OW columns per row dropped
        if products is None:
            products = np.empty((KW, OC, rows.shape[1]), dtype=x.dtype)
            total = np.empty((OC, rows.shape[1] - KW + 1), dtype=x.dtype)
        length = width + KW - 1
        block = products[:, :, :length]
        np.matmul(W_stacked, rows[:, :length], out=block.reshape(KW * OC, length))
        acc = total[:, :width]
        np.copyto(acc, block[0, :, :width])
        for q in range(1, KW):  # kernel column q: its block, q columns further on
            acc += block[q, :, q:q + width]
        y[n, :, i0:i0 + r] = acc.reshape(OC, r, Wp)[:, :, :OW]
    return y


def _weight_grad_by_column_offsets(gy, x, W_shape, PH, PW):
    """gW[:, :, :, q] = Σ_bands gy_band @ (band rows, q further on)ᵀ, the band rows copied from x
    as in the forward, with gy laid out on the padded width (zero in the dropped columns). As in the
    forward, one GEMM serves the KW kernel columns: the shift moves to gy, whose copy for column q
    starts q columns later, and the KW copies stacked (KW·OC rows) meet the band's rows once."""
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W_shape
    Wp = x.shape[3] + 2 * PW
    gW_stacked = np.empty((KW * OC, C * KH), dtype=gy.dtype)
    scratch = gy_shifted = None
    for k, (n, i0, r, buffer) in enumerate(_row_bands(N, OH, C, KH, KW, Wp, gy.dtype)):
        rows = _copy_band_rows(buffer, x, n, i0, r, KW, PH, PW)
        width, length = r * Wp, r * Wp + KW - 1
        if gy_shifted is None:
            # every value a band reads is written below: no zeros first (a pass over 10 MB for
            # 224->384 at 32x64)
            gy_shifted = np.empty((KW, OC, rows.shape[1]), dtype=gy.dtype)
        for q in range(KW):
            # gy_band on the padded width, q columns on; zero before it, after it (a longer
            # earlier band may have written there) and in every row's dropped columns
            copy = gy_shifted[q]
            copy[:, :q] = 0
            copy[:, q + width:length] = 0
            on_padded_width = copy[:, q:q + width].reshape(OC, r, Wp)
            on_padded_width[:, :, :OW] = gy[n, :, i0:i0 + r]
            on_padded_width[:, :, OW:] = 0
        stacked = gy_shifted[:, :, :length].reshape(KW * OC, length)
        scratch = _add_product(gW_stacked, stacked, rows[:, :length].T, k == 0, scratch)
    # back to (OC, C, KH, KW) one kernel column at a time: each a long loop over the other axes,
    # where one transposing copy loops 3 values at a time (cold 384×384×3×3 weights: 1.3 ms, not 1.9)
    gW = np.empty(W_shape, dtype=gy.dtype)
    for q, column in enumerate(gW_stacked.reshape(KW, OC, C, KH)):
        gW[..., q] = column
    return gW


def _conv_by_band_copies(x, W, flat, PH, PW):
    """The banded forward with each band's cols copied whole (KH·KW copies of every input value)
    from ``flat``, x padded and flattened (``_flat_padded``)."""
    N, C, H, Wd = x.shape
    OC, _, KH, KW = W.shape
    Wp = Wd + 2 * PW
    OH, OW = H + 2 * PH - KH + 1, Wp - KW + 1
    CKK = C * KH * KW
    Wm = _blas_matrix(W, OC, CKK)
    y = np.empty((N, OC, OH * OW), dtype=x.dtype)
    for n, i0, r, band in _bands(N, OH, OW, CKK, x.dtype):
        cols = band.reshape(C, KH, KW, r, OW)
        np.copyto(cols, _band_windows(flat, n, i0, r, C, KH, KW, Wp, OW))
        np.matmul(Wm, cols.reshape(CKK, r * OW), out=y[n, :, i0 * OW:(i0 + r) * OW])
    return y.reshape(N, OC, OH, OW)


def _weight_grad_by_band_copies(gy, flat, W_shape, x_shape, PH, PW):
    """gW = Σ_bands gy_band @ cols_bandᵀ, each band's cols copied whole from the padded input."""
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W_shape
    Wp = x_shape[3] + 2 * PW
    CKK = C * KH * KW
    gWm = np.empty((OC, CKK), dtype=gy.dtype)
    gy_rows = gy.reshape(N, OC, OH * OW)
    scratch = None
    for k, (n, i0, r, band) in enumerate(_bands(N, OH, OW, CKK, gy.dtype)):
        cols = band.reshape(C, KH, KW, r, OW)
        np.copyto(cols, _band_windows(flat, n, i0, r, C, KH, KW, Wp, OW))
        scratch = _add_product(gWm, gy_rows[n, :, i0 * OW:(i0 + r) * OW],
                               cols.reshape(CKK, r * OW).T, k == 0, scratch)
    return gWm.reshape(W_shape)


def _add_product(total, a, b, first, scratch=None):
    """total = a @ b when ``first`` (the first band), else total += a @ b through ``scratch``, made
    on first need and returned for the next band. Writing the first product straight into total
    spares the zeros it would start from and one addition: on a small image, all in one band,
    that is most of what gW costs beyond its GEMM."""
    if first:
        np.matmul(a, b, out=total)
        return scratch
    if scratch is None:
        scratch = np.empty_like(total)
    np.matmul(a, b, out=scratch)
    total += scratch
    return scratch


def _by_column_offsets(channels, KH, pixels):
    """Whether a banded convolution reads its kernel columns in place (KH copies of every input
    value, one GEMM of KW·OC rows and inner size C·KH) rather than copying whole cols (KH·KW copies,
    one GEMM of OC rows and inner size C·KH·KW): when that inner size and the image are large
    enough for the thinner GEMM to keep BLAS's pace (measured with ``minifrrn bench``)."""
    return channels * KH >= OFFSETS_MIN_INNER and pixels >= OFFSETS_MIN_PIXELS


def _gx_by_col2im(channels, filters, batch_pixels):
    """Whether gx of a banded convolution is Wᵀ·gy followed by col2im, rather than the adjoint
    convolution: for inputs of few channels, and for weights large beside the batch's output
    pixels (``ADJOINT_MIN_CHANNELS``, ``ADJOINT_MIN_PIXELS_PER_FILTER``)."""
    return (channels < ADJOINT_MIN_CHANNELS
            or batch_pixels < ADJOINT_MIN_PIXELS_PER_FILTER * filters)


def banded_conv2d(x, W, PH, PW):
    """Stride-1 convolution of NumPy x (N, C, H, W) with W (OC, C, KH, KW) one band of output rows
    at a time (module docstring). Returns (y, kept): y (N, OC, OH, OW) and what gW reads its bands
    from: x itself where the kernel columns are read in place (its band rows are copied straight
    from x), else x padded and flattened."""
    N, C, H, Wd = x.shape
    _, _, KH, KW = W.shape
    pixels = (H + 2 * PH - KH + 1) * (Wd + 2 * PW - KW + 1)
    if _by_column_offsets(C, KH, pixels):
        return _conv_by_column_offsets(x, W, PH, PW), x
    flat = _flat_padded(x, PH, PW)
    return _conv_by_band_copies(x, W, flat, PH, PW), flat


def _weight_grad_in_bands(gy, kept, W_shape, x_shape, PH, PW):
    """gW band by band, by the forward's variant, from what ``banded_conv2d`` returned to keep."""
    _, C, KH, _ = W_shape
    if gy.shape[0] == 0:  # an empty batch has no band: both routes would return their np.empty
        return np.zeros(W_shape, dtype=gy.dtype)
    if _by_column_offsets(C, KH, gy.shape[2] * gy.shape[3]):
        return _weight_grad_by_column_offsets(gy, kept, W_shape, PH, PW)
    return _weight_grad_by_band_copies(gy, kept, W_shape, x_shape, PH, PW)


def _input_grad_in_bands(gy, Wm, x_shape, KH, KW, PH, PW):
    """gx = col2im(Wᵀ @ gy) for a stride-1 convolution, one band of output rows at a time: each
    band's gcols (C·KH·KW, r·OW) is made and added back into the padded gx while it is in cache,
    so the KH·KW-times larger gcols never reaches memory. Neighbouring bands add into shared rows."""
    N, OC, OH, OW = gy.shape
    _, C, H, W = x_shape
    CKK = C * KH * KW
    gx = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=gy.dtype)
    gy_rows = gy.reshape(N, OC, OH * OW)
    for n, i0, r, band in _bands(N, OH, OW, CKK, gy.dtype):
        gcols = band.reshape(CKK, r * OW)
        np.matmul(Wm.T, gy_rows[n, :, i0 * OW:(i0 + r) * OW], out=gcols)
        gcols = gcols.reshape(C, KH, KW, r, OW)
        for p in range(KH):
            for q in range(KW):  # output (i, j) at offset (p, q) read padded pixel (i + p, j + q)
                gx[n, :, i0 + p:i0 + p + r, q:q + OW] += gcols[:, p, q]
    return gx[:, :, PH:PH + H, PW:PW + W]


class Conv2dFunction(Function):
    """y = conv2d(x, W, b) (see the module docstring); returns (gx, gW, gb)."""

    def __init__(self, stride, pad):
        self.SH, self.SW = stride
        self.PH, self.PW = pad

    def forward(self, x, W, b=None):
        xp = get_array_module(x, W)
        N, C, H, Wd = x.shape
        OC, _, KH, KW = W.shape
        OH = conv_output_size(H, KH, self.SH, self.PH)
        OW = conv_output_size(Wd, KW, self.SW, self.PW)
        self.x_shape, self.KH, self.KW = x.shape, KH, KW
        self.ex = executor_for(x, W)
        if self.ex is not None:  # the GPU path: im2col kernel + one batched GEMM
            y = gpu.conv2d_forward(xp, self.ex, x, W, b, self.SH, self.SW, self.PH, self.PW)
            self.x = x if self.needs_input_grad[1] else None  # backward makes cols again from x
            self.W = W if self.needs_input_grad[0] else None
            self.W_shape, self.route = W.shape, "gpu"
            return y
        self.W_shape = W.shape
        self.route = ("banded" if _use_banded(xp, KH, KW, self.SH, self.SW, self.PH, self.PW)
                      else "im2col")
        if self.route == "banded":
            y, kept = banded_conv2d(x, W, self.PH, self.PW)
            if b is not None:
                y += b.reshape(1, OC, 1, 1)
            self.kept = kept if self.needs_input_grad[1] else None  # what gW's bands are read from
            self.Wm = W.reshape(OC, -1) if self.needs_input_grad[0] else None
            return y
        pointwise = KH == KW == 1 and self.SH == self.SW == 1 and self.PH == self.PW == 0
        cols = (xp.ascontiguousarray(x).reshape(N, C, H * Wd) if pointwise
                else im2col(x, KH, KW, self.SH, self.SW, self.PH, self.PW))
        Wm = W.reshape(OC, -1)
        y = xp.matmul(Wm, cols)  # (N, OC, OH·OW): already NCHW
        if b is not None:
            y += b.reshape(1, OC, 1)
        # keep only what the gradients need: cols for gW, W for gx
        self.cols = cols if self.needs_input_grad[1] else None
        self.Wm = Wm if self.needs_input_grad[0] else None
        return y.reshape(N, OC, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, OC, OH, OW = gy.shape
        has_bias = len(self.needs_input_grad) > 2
        if self.ex is not None:
            W = self.W if self.W is not None else xp.empty(self.W_shape, gy.dtype)
            gx, gW, gb = gpu.conv2d_backward(
                xp, self.ex, gy, self.x, W, self.x_shape, self.SH, self.SW, self.PH, self.PW,
                self.needs_input_grad[0], self.needs_input_grad[1],
                has_bias and self.needs_input_grad[2])
            return (gx, gW, gb) if has_bias else (gx, gW)
        if self.route == "banded":
            return self._banded_backward(gy, has_bias)
        gy = gy.reshape(N, OC, OH * OW)
        gx = gW = gb = None
        if self.needs_input_grad[1]:
            gWm = xp.zeros((OC, self.cols.shape[1]), dtype=gy.dtype)
            for n in range(N):  # BLAS reads the transposed operand in place: no copy
                gWm += gy[n] @ self.cols[n].T
            gW = gWm.reshape(self.W_shape)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2))
        if self.needs_input_grad[0]:
            gx = self._input_grad_by_col2im(xp, gy)
        return (gx, gW) if len(self.needs_input_grad) == 2 else (gx, gW, gb)

    def _input_grad_by_col2im(self, xp, gy):
        """gx = col2im(Wᵀ @ gy[n]) from gy (N, OC, OH·OW); a 1×1 stride-1 convolution needs no
        col2im (its cols is x itself)."""
        gcols = xp.matmul(self.Wm.T, gy)  # (N, C·KH·KW, OH·OW)
        if self.KH == self.KW == 1 and self.SH == self.SW == 1 and self.PH == self.PW == 0:
            return gcols.reshape(self.x_shape)
        return xp.ascontiguousarray(col2im(gcols, self.x_shape, self.KH, self.KW, self.SH, self.SW,
                                           self.PH, self.PW))

    def _banded_backward(self, gy, has_bias):
        """The gradients of the banded route, from what forward kept (x, or x padded and flattened):
        gW from bands of cols, gb = Σ gy, and gx as the banded convolution of gy with the flipped,
        transposed kernel padded by K − 1 − P (as col2im(Wᵀ·gy), band by band, for inputs of few
        channels and for weights large beside the batch's output pixels: ``_gx_by_col2im``)."""
        gy = np.ascontiguousarray(gy)
        OC, _, KH, KW = self.W_shape
        gx = gW = gb = None
        if self.needs_input_grad[1]:
            gW = _weight_grad_in_bands(gy, self.kept, self.W_shape, self.x_shape, self.PH, self.PW)
        if has_bias and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        by_col2im = _gx_by_col2im(self.x_shape[1], OC, gy.shape[0] * gy.shape[2] * gy.shape[3])
        if self.needs_input_grad[0] and by_col2im:
            gx = np.ascontiguousarray(_input_grad_in_bands(gy, self.Wm, self.x_shape, KH, KW,
                                                           self.PH, self.PW))
        elif self.needs_input_grad[0]:
            gx, _ = banded_conv2d(gy, _adjoint_kernel(self.Wm.reshape(self.W_shape)),
                                  KH - 1 - self.PH, KW - 1 - self.PW)
        return (gx, gW, gb) if has_bias else (gx, gW)


def conv2d(x, W, b=None, stride=1, pad=0):
    """2-D cross-correlation of x (N, C, H, W) with W (OC, C, KH, KW), optional bias b (OC,).

    ``stride`` and ``pad`` are ints or (vertical, horizontal) pairs; padding is with zeros.
    Returns y (N, OC, OH, OW). Gradients: gx = col2im(Wᵀ·gy), gW = Σ_n gy·colsᵀ, gb = Σ gy.
    """
    stride, pad = int_pair(stride, "conv2d: stride"), int_pair(pad, "conv2d: pad")
    xd, Wd = _data(x), _data(W)
    if xd.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
    if Wd.ndim != 4:
        raise ValueError(f"conv2d: W must be 4-D (OC, C, KH, KW), got shape {tuple(Wd.shape)}")
    if xd.shape[1] != Wd.shape[1]:
        raise ValueError(f"conv2d: x has {xd.shape[1]} channels but W expects {Wd.shape[1]} "
                         f"(W shape {tuple(Wd.shape)})")
    for name, arr in (("x", xd), ("W", Wd)) + ((("b", _data(b)),) if b is not None else ()):
        if arr.dtype not in _FLOATS:
            raise TypeError(f"conv2d: {name} must be float32 or float64, got {arr.dtype}")
    if xd.dtype != Wd.dtype:
        raise TypeError(f"conv2d: x is {xd.dtype} but the weights are {Wd.dtype}: cast the input "
                        f"(x.astype(...)) or the model (model.astype(...)) so they match")
    if b is not None and _data(b).dtype != Wd.dtype:
        raise TypeError(f"conv2d: the bias is {_data(b).dtype} but the weights are {Wd.dtype}: "
                        f"cast the bias (b.astype(...)) so they match")
    if b is not None and tuple(_data(b).shape) != (Wd.shape[0],):
        raise ValueError(f"conv2d: b must have shape ({Wd.shape[0]},), got {tuple(_data(b).shape)}")
    if min(stride) < 1 or min(pad) < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    OH = conv_output_size(xd.shape[2], Wd.shape[2], stride[0], pad[0])
    OW = conv_output_size(xd.shape[3], Wd.shape[3], stride[1], pad[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {Wd.shape[2]}x{Wd.shape[3]} is larger than the padded "
                         f"input {xd.shape[2]}x{xd.shape[3]} (pad {pad})")
    fn = Conv2dFunction(stride, pad)
    return fn(x, W) if b is None else fn(x, W, b)
