"""The GPU suite (`pytest -m gpu`): the kernels on CuPy against the NumPy path, gradient checks on the
GPU, and a whole FRRN-A training step at 256x512. Skips cleanly without CuPy or a CUDA device."""
import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.backend import gpu_available

pytestmark = pytest.mark.gpu

if not gpu_available():
    pytest.skip("no GPU: CuPy is missing or no CUDA device answers", allow_module_level=True)

import cupy as cp  # noqa: E402

from gemm_cases import GEMM_CASES, gemm_operands, gemm_reference  # noqa: E402

TOL = {np.float64: dict(rtol=1e-11, atol=1e-11), np.float32: dict(rtol=1e-4, atol=1e-4)}


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed=0):
    return np.random.default_rng(seed).permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape)


def run_op(fn, arrays, dtype, device):
    tensors = [mf.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, device=device,
                         requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(*tensors)
    upstream = np.random.default_rng(99).standard_normal(out.shape).astype(dtype)
    out.backward(cp.asarray(upstream) if device == "gpu" else upstream)
    return [mf.backend.as_numpy(out.data)] + [mf.backend.as_numpy(t.grad) for t in tensors
                                              if t.requires_grad]


def compare(fn, arrays, dtype):
    for e, g in zip(run_op(fn, arrays, dtype, "cpu"), run_op(fn, arrays, dtype, "gpu")):
        np.testing.assert_allclose(g, e, **TOL[dtype])


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2)])
def test_max_pool_lets_a_nan_through_as_numpy_does(k, s):
    x = distinct((1, 2, 2 * k + 1, 2 * k + 2), seed=13)
    x[0, 0, k - 1, k - 1] = np.nan
    cpu, gpu = (run_op(lambda x: F.max_pool2d(x, k, s), [x], np.float32, d)[0] for d in ("cpu", "gpu"))
    assert np.isnan(gpu[0, 0, 0, 0])
    np.testing.assert_array_equal(gpu, cpu)


def loss_target(device):
    t = np.random.default_rng(5).integers(0, 5, (2, 6, 7))
    t[0, :2] = 255
    return t


CASES = [
    ("conv3x3", lambda x, W, b: F.conv2d(x, W, b, stride=1, pad=1),
     lambda: [rnd(2, 3, 7, 5, seed=1), rnd(4, 3, 3, 3, seed=2), rnd(4, seed=3)]),
    ("conv5x5s2", lambda x, W, b: F.conv2d(x, W, b, stride=2, pad=2),
     lambda: [rnd(2, 3, 9, 7, seed=1), rnd(4, 3, 5, 5, seed=2), rnd(4, seed=3)]),
    ("conv1x1", lambda x, W: F.conv2d(x, W), lambda: [rnd(2, 6, 5, 4, seed=4), rnd(3, 6, 1, 1, seed=5)]),
    ("bn_train", lambda x, g, b: F.batch_norm(x, g, b, cp.zeros(3, x.dtype), cp.ones(3, x.dtype), True),
     lambda: [rnd(2, 3, 5, 7, seed=6), rnd(3, seed=7), rnd(3, seed=8)]),
    ("bn_relu_train", lambda x, g, b: F.batch_norm(x, g, b, cp.zeros(3, x.dtype), cp.ones(3, x.dtype),
                                                   True, relu=True),
     lambda: [rnd(2, 3, 5, 7, seed=6), rnd(3, seed=7), rnd(3, seed=8)]),
    ("pool2", lambda x: F.max_pool2d(x, 2), lambda: [distinct((2, 3, 8, 6), seed=9)]),
    ("pool3s2", lambda x: F.max_pool2d(x, 3, 2), lambda: [distinct((1, 2, 7, 9), seed=10)]),
    ("nearest4", lambda x: F.upsample_nearest2d(x, 4), lambda: [rnd(2, 3, 5, 3, seed=11)]),
    ("bilinear", F.upsample_bilinear2x, lambda: [rnd(2, 3, 5, 3, seed=12)]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,fn,make", CASES, ids=[c[0] for c in CASES])
def test_cupy_matches_numpy(name, fn, make, dtype):
    if name.startswith("bn_"):
        # the running statistics must live on the op's device: compare the GPU run to the CPU one,
        # forward and every gradient
        arrays = make()
        cpu = [mf.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
        out_cpu = F.batch_norm(*cpu, np.zeros(3, dtype), np.ones(3, dtype), True,
                               relu=name == "bn_relu_train")
        gpu_t = [mf.tensor(a.astype(dtype), device="gpu", requires_grad=True) for a in arrays]
        out_gpu = fn(*gpu_t)
        upstream = np.random.default_rng(99).standard_normal(out_cpu.shape).astype(dtype)
        out_cpu.backward(upstream)
        out_gpu.backward(cp.asarray(upstream))
        np.testing.assert_allclose(cp.asnumpy(out_gpu.data), out_cpu.data, **TOL[dtype])
        for g, c in zip(gpu_t, cpu):
            np.testing.assert_allclose(cp.asnumpy(g.grad), c.grad, **TOL[dtype])
        return
    compare(fn, make(), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_fused_loss_matches_numpy(dtype):
    target = loss_target("cpu")
    f = rnd(2, 5, 6, 7, seed=13) * 3
    for loss in (F.cross_entropy, lambda a, t: F.bootstrapped_cross_entropy(a, t, k=9)):
        cpu = mf.tensor(f.astype(dtype), requires_grad=True)
        gpu = mf.tensor(f.astype(dtype), device="gpu", requires_grad=True)
        lc, lg = loss(cpu, target), loss(gpu, cp.asarray(target))
        lc.backward()
        lg.backward()
        np.testing.assert_allclose(float(lg.item()), float(lc.item()), **TOL[dtype])
        np.testing.assert_allclose(cp.asnumpy(gpu.grad), cpu.grad, **TOL[dtype])


@pytest.mark.parametrize("name,fn,make", CASES[:3] + CASES[4:], ids=[c[0] for c in CASES[:3] + CASES[4:]])
def test_gradcheck_on_the_gpu(name, fn, make):
    arrays = [cp.asarray(a) for a in make()]
    mf.gradcheck(fn, arrays)


def test_frrn_a_training_step_at_256x512_matches_the_cpu():
    # float64, so that the comparison is tight: in float32 the two devices sum in different orders
    # through ~80 layers, and the bootstrapped selection of the K largest losses can flip near-ties
    from minifrrn.models import frrn_a
    x = np.random.default_rng(14).random((1, 3, 256, 512))
    target = np.random.default_rng(15).integers(0, 19, (1, 256, 512))
    results = []
    for device in ("cpu", "gpu"):
        model = frrn_a(seed=0).astype(np.float64).to(device)
        xt = mf.tensor(x, device=device)
        t = cp.asarray(target) if device == "gpu" else target
        loss = F.bootstrapped_cross_entropy(model(xt), t)
        loss.backward()
        results.append([np.array(float(loss.item()))] +
                       [mf.backend.as_numpy(p.grad) for p in model.parameters()])
    for name, a, b in zip(["loss"] + [n for n, _ in frrn_a().named_parameters()], *results):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", GEMM_CASES, ids=[f"{a}{'T' if ta else ''}@{b}{'T' if tb else ''}"
                                                  for a, b, ta, tb in GEMM_CASES])
def test_cupy_gemm_matches_the_product_written_out(case, dtype):
    from minifrrn.kernels import CupyExecutor
    a, b, c = gemm_operands(case, dtype)
    ta, tb = case[2:]
    expected = gemm_reference(a, b, ta, tb)
    ex = CupyExecutor()
    got = ex.gemm(cp.asarray(a), cp.asarray(b), transpose_a=ta, transpose_b=tb)
    np.testing.assert_allclose(cp.asnumpy(got), expected, **TOL[dtype])
    out = cp.asarray(c)
    ex.gemm(cp.asarray(a), cp.asarray(b), out=out, transpose_a=ta, transpose_b=tb, accumulate=True)
    np.testing.assert_allclose(cp.asnumpy(out), c + expected, **TOL[dtype])
    scaled = ex.gemm(cp.asarray(a), cp.asarray(b), transpose_a=ta, transpose_b=tb, alpha=-0.5)
    np.testing.assert_allclose(cp.asnumpy(scaled), -0.5 * expected, **TOL[dtype])


def test_tensor_conveniences_and_state_loading_on_the_gpu():
    # in-place updates under no_grad, NumPy conversion and a checked state load, on CuPy arrays
    start = rnd(5, seed=3).astype(np.float32)
    w = mf.tensor(start, device="gpu", requires_grad=True)
    (w * w).sum().backward()
    data = w.data
    with mf.no_grad():
        w -= 0.25 * w.grad
        w /= 2
    assert w.data is data and w.device == "gpu"
    np.testing.assert_allclose(np.asarray(w), (start - 0.5 * start) / 2, rtol=1e-6)
    conv = mf.nn.Conv2d(2, 3, 3).to("gpu")
    state = {"weight": cp.asarray(rnd(3, 2, 3, 3, seed=4))}
    assert conv.load_state_dict(state) == ([], [])
    np.testing.assert_allclose(conv.weight.numpy(), rnd(3, 2, 3, 3, seed=4).astype(np.float32))
    with pytest.raises(ValueError, match="beyond the range of float32"):
        conv.load_state_dict({"weight": cp.full((3, 2, 3, 3), 1e300)})
