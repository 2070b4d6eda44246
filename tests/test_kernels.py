"""The CUDA kernels, without a GPU: compiled by nvcc when it is present, and executed through the
CPU emulator (the same source built with g++) against the NumPy path of every op."""
import shutil
import subprocess

import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.functional.conv import col2im as np_col2im
from minifrrn.functional.conv import im2col as np_im2col
from minifrrn.kernels import EmulatorExecutor, executor_for, launch_config_2d, ops
from minifrrn.kernels.executor import HERE, KERNEL_FILES

from gemm_cases import GEMM_CASES, gemm_operands, gemm_reference

CU_FILES = sorted(set(KERNEL_FILES.values()))
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("filename", CU_FILES)
def test_kernels_compile_with_nvcc_for_sm90(filename, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH")
    result = subprocess.run([nvcc, "--ptx", "-arch=sm_90", "--std=c++14", str(HERE / filename),
                             "-o", str(tmp_path / "out.ptx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "out.ptx").read_text()
    for name, source in KERNEL_FILES.items():
        if source == filename:
            assert f"{name}_f32" in ptx and f"{name}_f64" in ptx


def run_op(fn, arrays, dtype, emulate, seed=0):
    """Forward and every input gradient of fn, with the GPU path emulated or not."""
    tensors = [mf.tensor(a.astype(dtype) if a.dtype.kind == "f" else a,
                         requires_grad=a.dtype.kind == "f") for a in arrays]
    with mf.emulate_gpu(emulate):
        out = fn(*tensors)
        upstream = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
        out.backward(upstream)
    return [out.data] + [t.grad for t in tensors if t.requires_grad]


def compare(fn, arrays, dtype):
    expected = run_op(fn, arrays, dtype, emulate=False)
    got = run_op(fn, arrays, dtype, emulate=True)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, **TOL[dtype])


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed=0):
    return np.random.default_rng(seed).permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape)


CONV_MATRIX = [(k, s, p) for k in (1, 3, 5) for s in (1, 2) for p in (0, 1, 2) if k + 2 * p <= 7]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,s,p", CONV_MATRIX)
def test_conv2d_gpu_path_matches_numpy(k, s, p, dtype):
    compare(lambda x, W, b: F.conv2d(x, W, b, stride=s, pad=p),
            [rnd(2, 3, 7, 5 + 2 * (k == 5), seed=1), rnd(4, 3, k, k, seed=2), rnd(4, seed=3)], dtype)


@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_gpu_path_takes_an_empty_batch_as_numpy_does(k):
    inputs = [rnd(0, 3, 5, 5, seed=1), rnd(4, 3, k, k, seed=2), rnd(4, seed=3)]
    expected, got = (run_op(lambda x, W, b: F.conv2d(x, W, b, pad=k // 2), inputs, np.float64,
                            emulate=e) for e in (False, True))
    assert got[0].shape == (0, 4, 5, 5)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def test_conv2d_gpu_path_batch1_one_channel_non_contiguous():
    x = rnd(1, 5, 7, 1, seed=4).transpose(0, 3, 1, 2)  # (1, 1, 5, 7), not contiguous
    compare(lambda x, W: F.conv2d(x, W, stride=(1, 2), pad=(2, 1)), [x, rnd(2, 1, 3, 3, seed=5)],
            np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gpu_path_matches_numpy(training, relu, dtype):
    running = (np.abs(rnd(3, seed=6)) + 0.2, np.abs(rnd(3, seed=7)) + 0.5)
    compare(lambda x, g, b: F.batch_norm(x, g, b, running[0].astype(dtype).copy(),
                                         running[1].astype(dtype).copy(), training, relu=relu),
            [rnd(2, 3, 5, 7, seed=8) * 2 + 1, rnd(3, seed=9), rnd(3, seed=10)], dtype)


@pytest.mark.parametrize("running_dtype", [None, np.float64])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_gpu_path_updates_running_statistics_as_numpy(dtype, running_dtype):
    # running arrays of x's dtype are updated inside the bn_statistics kernel, others by array ops
    running_dtype = running_dtype or dtype
    x, gamma, beta = rnd(2, 3, 5, 7, seed=36) * 3 - 1, rnd(3, seed=37), rnd(3, seed=38)
    updated = []
    for emulate in (False, True):
        running = [(np.abs(rnd(3, seed=39)) + 0.2).astype(running_dtype),
                   (np.abs(rnd(3, seed=40)) + 0.5).astype(running_dtype)]
        with mf.emulate_gpu(emulate):
            F.batch_norm(mf.tensor(x.astype(dtype)), mf.tensor(gamma.astype(dtype)),
                         mf.tensor(beta.astype(dtype)), *running, True, momentum=0.3)
        updated.append(running)
    for emulated, cpu in zip(updated[1], updated[0]):
        assert emulated.dtype == running_dtype
        np.testing.assert_allclose(emulated, cpu, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,s,shape", [(2, 2, (2, 3, 8, 6)), (2, 2, (1, 1, 7, 5)), (3, 2, (2, 2, 7, 9)),
                                       (4, 4, (1, 2, 9, 8)), (2, 1, (1, 2, 5, 4)), (16, 16, (1, 1, 32, 48))])
def test_max_pool_gpu_path_matches_numpy(k, s, shape, dtype):
    compare(lambda x: F.max_pool2d(x, k, s), [distinct(shape, seed=11)], dtype)


def test_max_pool_gpu_path_ties_go_to_the_first_index():
    x = np.ones((1, 1, 4, 4))
    compare(lambda x: F.max_pool2d(x, 2), [x], np.float64)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (4, 4)])
def test_max_pool_gpu_path_lets_a_nan_through_as_numpy_does(k, s):
    # a NaN after a window's first value: the kernel's v > best alone would skip it
    x = distinct((1, 2, 2 * k + 1, 2 * k + 2), seed=12)
    x[0, 0, k - 1, k - 1] = np.nan
    expected, got = (run_op(lambda x: F.max_pool2d(x, k, s), [x], np.float32, emulate=e)[0]
                     for e in (False, True))
    assert np.isnan(got[0, 0, 0, 0])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1, 2, 3, 8])
def test_nearest_gpu_path_matches_numpy(scale, dtype):
    compare(lambda x: F.upsample_nearest2d(x, scale), [rnd(2, 3, 5, 3, seed=12)], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 5, 3), (1, 1, 1, 4), (1, 2, 4, 1)])
def test_bilinear_gpu_path_matches_numpy(shape, dtype):
    compare(F.upsample_bilinear2x, [rnd(*shape, seed=13)], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("boot", [False, True])
def test_fused_softmax_loss_matches_numpy(boot, dtype):
    target = np.random.default_rng(14).integers(0, 5, (2, 6, 7))
    target[0, :2] = 255
    fn = (lambda f, t: F.bootstrapped_cross_entropy(f, t, k=9)) if boot else F.cross_entropy
    compare(fn, [rnd(2, 5, 6, 7, seed=15) * 3, target], dtype)


def test_fused_softmax_loss_is_stable_at_1e4():
    target = np.random.default_rng(16).integers(0, 4, (1, 3, 3))
    with mf.emulate_gpu():
        x = mf.tensor((rnd(1, 4, 3, 3, seed=17) * 1e4).astype(np.float32), requires_grad=True)
        loss = F.cross_entropy(x, target)
        loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad).all()


OPS_FOR_GRADCHECK = [
    ("conv", lambda x, W, b: F.conv2d(x, W, b, stride=2, pad=1),
     [rnd(1, 2, 5, 4, seed=18), rnd(3, 2, 3, 3, seed=19), rnd(3, seed=20)]),
    ("bn", lambda x, g, b: F.batch_norm(x, g, b, np.zeros(2), np.ones(2), True),
     [rnd(2, 2, 3, 3, seed=21), rnd(2, seed=22), rnd(2, seed=23)]),
    ("bn_relu", lambda x, g, b: F.batch_norm(x, g, b, np.zeros(2), np.ones(2), True, relu=True),
     [rnd(2, 2, 3, 3, seed=21), rnd(2, seed=22), rnd(2, seed=23)]),
    ("pool", lambda x: F.max_pool2d(x, 2), [distinct((1, 2, 4, 6), seed=24)]),
    ("nearest", lambda x: F.upsample_nearest2d(x, 2), [rnd(1, 2, 3, 2, seed=25)]),
    ("bilinear", F.upsample_bilinear2x, [rnd(1, 2, 3, 2, seed=26)]),
    ("loss", lambda f, t: F.bootstrapped_cross_entropy(f, t, k=4),
     [rnd(2, 3, 3, 3, seed=27), np.random.default_rng(28).integers(0, 3, (2, 3, 3))]),
]


@pytest.mark.parametrize("name,fn,inputs", OPS_FOR_GRADCHECK, ids=[o[0] for o in OPS_FOR_GRADCHECK])
def test_gpu_path_gradcheck_through_the_emulator(name, fn, inputs):
    with mf.emulate_gpu():
        mf.gradcheck(fn, inputs)


def test_grid_stride_loops_cover_launches_smaller_than_the_work():
    # grids smaller than the work in both directions: each thread loops over several pixels, each
    # block row over several rows (im2col), planes (col2im) or channels (channel_sums)
    ex = EmulatorExecutor()
    x = rnd(2, 3, 9, 11, seed=29)
    N, C, H, W = x.shape
    KH = KW = 3
    OH, OW = 9, 11                                       # 99 pixels, 54 rows of cols
    cols = np.empty((N, C * 9, OH * OW))
    sizes = tuple(np.int32(v) for v in (N, C, H, W, KH, KW, 1, 1, 1, 1, OH, OW))
    ex.launch("im2col", np.float64, (2, 3), (32,), (x, cols) + sizes)   # 64 threads, 3 block rows
    np.testing.assert_array_equal(cols, np_im2col(x, 3, 3, 1, 1, 1, 1))
    gx = np.empty_like(x)
    ex.launch("col2im", np.float64, (2, 4), (33,), (cols, gx) + sizes)  # 66 threads, 6 planes
    np.testing.assert_allclose(gx, np_col2im(cols, x.shape, 3, 3, 1, 1, 1, 1), rtol=1e-12)
    shift = rnd(C, seed=30)
    partial = np.empty((C, 8))
    i64 = np.int64
    ex.launch("channel_sums", np.float64, (1, 2), (8,),               # 8 threads, 2 block rows
              (x, shift, partial, i64(N), i64(C), i64(H * W), i64(2)))
    np.testing.assert_allclose(partial.sum(axis=1),
                               ((x - shift.reshape(1, C, 1, 1)) ** 2).sum(axis=(0, 2, 3)),
                               rtol=1e-12)


def test_launch_config_2d_refuses_sizes_beyond_32_bits():
    with pytest.raises(ValueError, match="32 bits"):
        launch_config_2d(2 ** 31, 1)


def test_col2im_writes_every_element(poisoned_empty):
    # its output starts as NaN: an element the gather never wrote would show (stride 2 leaves
    # input pixels that no window reads, which must come out 0)
    ex = EmulatorExecutor()
    cols = rnd(2, 3 * 9, 4 * 3, seed=30)
    gathered = ops.col2im(np, ex, cols, (2, 3, 7, 5), 3, 3, 2, 2, 1, 1)
    np.testing.assert_allclose(gathered, np_col2im(cols, (2, 3, 7, 5), 3, 3, 2, 2, 1, 1),
                               rtol=1e-12, atol=1e-12)


def test_emulator_rejects_untyped_scalars_as_cupy_would_misread_them():
    ex = EmulatorExecutor()
    x = np.ones((1, 1, 2, 2))
    y = np.empty((1, 1, 4, 4))
    with pytest.raises(TypeError, match="numpy int64 scalar"):
        ex.launch("nearest_forward", np.float64, (1,), (32,), (x, y, 1, 2, 2, 2))
    with pytest.raises(TypeError, match="float32"):
        ex.launch("nearest_forward", np.float64, (1,), (32,),
                  (x.astype(np.float32), y, np.int64(1), np.int64(2), np.int64(2), np.int64(2)))


def test_executor_selection(monkeypatch):
    monkeypatch.delenv("MINIFRRN_EMULATE_GPU", raising=False)
    assert executor_for(np.ones(2)) is None
    with mf.emulate_gpu():
        assert isinstance(executor_for(np.ones(2)), EmulatorExecutor)


def test_tiny_frrn_training_step_on_the_emulated_gpu_path_matches_numpy():
    from minifrrn.models import FRRN
    results = []
    for emulate in (False, True):
        mf.nn.init.manual_seed(31)
        model = FRRN(num_classes=3, encoder=[[1, 4, 2], [1, 5, 4]], decoder=[[1, 4, 2]],
                     stem_channels=3, z_channels=2, head_channels=3, stem_units=1, head_units=1)
        model.astype(np.float64)
        x = mf.tensor(rnd(2, 3, 8, 8, seed=32))
        target = np.random.default_rng(33).integers(0, 3, (2, 8, 8))
        with mf.emulate_gpu(emulate):
            loss = F.bootstrapped_cross_entropy(model(x), target)
            loss.backward()
        results.append([loss.data] + [p.grad for p in model.parameters()] +
                       [b.data for b in model.buffers()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gpu_path_conv_keeps_no_cols_for_backward():
    # backward makes cols again from x: nothing the function keeps is larger than its input, and
    # the gradients still equal the CPU path's
    grads = []
    for emulate in (True, False):
        x = mf.tensor(rnd(1, 4, 6, 5, seed=33), requires_grad=True)
        W = mf.tensor(rnd(3, 4, 3, 3, seed=34), requires_grad=True)
        with mf.emulate_gpu(emulate):
            y = F.conv2d(x, W, pad=1)
            if emulate:
                kept = [v for v in vars(y.creator).values() if isinstance(v, np.ndarray)]
                assert kept and max(a.size for a in kept) <= x.data.size
            y.backward(rnd(1, 3, 6, 5, seed=35))
        grads.append((x.grad, W.grad))
    for emulated, cpu in zip(*grads):
        np.testing.assert_allclose(emulated, cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", GEMM_CASES, ids=[f"{a}{'T' if ta else ''}@{b}{'T' if tb else ''}"
                                                  for a, b, ta, tb in GEMM_CASES])
def test_emulator_gemm_matches_the_product_written_out(case):
    ex = EmulatorExecutor()
    a, b, c = gemm_operands(case, np.float64)
    ta, tb = case[2:]
    expected = gemm_reference(a, b, ta, tb)
    np.testing.assert_allclose(ex.gemm(a, b, transpose_a=ta, transpose_b=tb), expected, rtol=1e-12)
    out = c.copy()
    ex.gemm(a, b, out=out, transpose_a=ta, transpose_b=tb, accumulate=True)
    np.testing.assert_allclose(out, c + expected, rtol=1e-12)
    np.testing.assert_allclose(ex.gemm(a, b, transpose_a=ta, transpose_b=tb, alpha=-0.5),
                               -0.5 * expected, rtol=1e-12)


def test_gemm_refuses_what_cublas_would_misread():
    ex = EmulatorExecutor()
    a, b = rnd(5, 3, seed=40), rnd(3, 4, seed=41)
    with pytest.raises(ValueError, match="C-contiguous"):
        ex.gemm(a, b[:, ::2])
    with pytest.raises(ValueError, match="do not multiply"):
        ex.gemm(a, b, transpose_b=True)
    with pytest.raises(TypeError, match="float32 or both float64"):
        ex.gemm(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="out must be"):
        ex.gemm(a, b, out=np.empty((4, 5)))


def test_launch_config_2d_leaves_room_for_the_last_grid_stride():
    # a loop index steps one grid stride past the count before it stops: that must fit in 32 bits
    fits = 2 ** 31 - 1 - 65_535 * 256
    launch_config_2d(fits, 1)
    with pytest.raises(ValueError, match="32 bits"):
        launch_config_2d(fits + 1, 1)
    with pytest.raises(ValueError, match="32 bits"):
        launch_config_2d(1, 2 ** 31 - 65_535)


@pytest.mark.parametrize("x_shape,stride", [((1, 1, 2 ** 16, 2 ** 15), 2), ((1, 1, 2 ** 16, 2 ** 16), 1)])
def test_im2col_refuses_planes_beyond_32_bits(x_shape, stride):
    # with stride 2 the output plane fits but the input plane (read as x[h*W + w]) does not
    with pytest.raises(ValueError, match="index a plane in 32 bits"):
        ops._im2col_sizes(x_shape, 3, 3, stride, stride, 1, 1)
