import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F


def data(seed=0, shape=(3, 2, 4, 5)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2.0 + 0.7
    return x, rng.standard_normal(shape[1]), rng.standard_normal(shape[1])


def test_training_forward_normalises_per_channel_and_updates_running_stats():
    x, g, b = data()
    rm, rv = np.array([0.5, -0.2]), np.array([1.5, 0.8])
    rm0, rv0 = rm.copy(), rv.copy()
    y = F.batch_norm(mf.tensor(x, dtype=np.float64), mf.tensor(g, dtype=np.float64),
                     mf.tensor(b, dtype=np.float64), rm, rv, training=True, momentum=0.1, eps=1e-4)
    for c in range(2):
        v = x[:, c].ravel()
        expected = g[c] * (x[:, c] - v.mean()) / np.sqrt(v.var() + 1e-4) + b[c]
        np.testing.assert_allclose(y.data[:, c], expected, rtol=1e-12, atol=1e-14)
        unbiased = v.var(ddof=1)
        np.testing.assert_allclose(rm[c], 0.9 * rm0[c] + 0.1 * v.mean(), rtol=1e-12)
        np.testing.assert_allclose(rv[c], 0.9 * rv0[c] + 0.1 * unbiased, rtol=1e-12)


def test_eval_forward_uses_running_stats_and_leaves_them():
    x, g, b = data(1)
    rm, rv = np.array([0.5, -0.2]), np.array([1.5, 0.8])
    y = F.batch_norm(mf.tensor(x, dtype=np.float64), mf.tensor(g, dtype=np.float64),
                     mf.tensor(b, dtype=np.float64), rm, rv, training=False)
    expected = g[None, :, None, None] * (x - rm[None, :, None, None]) / np.sqrt(
        rv[None, :, None, None] + 1e-4) + b[None, :, None, None]
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(rm, [0.5, -0.2])


def test_gradcheck_training_mode_with_running_stats_frozen():
    x, g, b = data(2)
    rm, rv = np.zeros(2), np.ones(2)

    def fn(x, g, b):
        return F.batch_norm(x, g, b, rm.copy(), rv.copy(), training=True)  # stats frozen per call

    mf.gradcheck(fn, [x, g, b])


def test_gradcheck_eval_mode():
    x, g, b = data(3)
    rm, rv = np.array([0.3, -0.1]), np.array([0.7, 2.0])
    mf.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, rm, rv, training=False), [x, g, b])


def test_bad_input():
    x, g, b = data(4)
    with pytest.raises(ValueError, match="gamma must have shape"):
        F.batch_norm(mf.tensor(x), mf.tensor(np.ones(3)), mf.tensor(b), None, None, True)
    with pytest.raises(ValueError, match="4-D"):
        F.batch_norm(mf.tensor(x[0]), mf.tensor(g), mf.tensor(b), None, None, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.batch_norm(mf.tensor(x.astype(np.float16)), mf.tensor(g), mf.tensor(b), None, None, True)


@pytest.mark.parametrize("training", [True, False])
def test_fused_relu_equals_relu_after_batch_norm_forward_and_backward(training):
    x, g, b = data(5, shape=(2, 3, 4, 5))
    rm, rv = np.array([0.4, -0.3, 1.0]), np.array([0.9, 2.0, 0.6])
    upstream = np.random.default_rng(6).standard_normal(x.shape)
    results = []
    for fused in (True, False):
        xt, gt, bt = (mf.tensor(a, requires_grad=True) for a in (x, g, b))
        out = F.batch_norm(xt, gt, bt, rm.copy(), rv.copy(), training, relu=fused)
        if not fused:
            out = F.relu(out)
        out.backward(upstream)
        results.append([out.data, xt.grad, gt.grad, bt.grad])
    y = results[1][0]
    assert (y == 0).mean() > 0.2 and (y > 0).mean() > 0.2  # the ReLU clips a real share of values
    for fused_value, composed_value in zip(*results):
        np.testing.assert_allclose(fused_value, composed_value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_fused_relu(training):
    x, g, b = data(7)
    rm, rv = np.array([0.3, -0.1]), np.array([0.7, 2.0])
    mf.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, rm.copy(), rv.copy(), training,
                                              relu=True), [x, g, b])


def test_block_size_follows_threads_and_the_l2():
    from minifrrn.functional import norm
    f32 = np.float32
    # one thread, input and output overflow a 2 MiB L2: small blocks (FRRN A's 1/8 stage)
    assert norm._block_bytes(np.empty((1, 384, 32, 64), f32)) == norm.INLINE_BLOCK_BYTES
    # one thread, but input and output fit the L2: one block
    assert norm._block_bytes(np.empty((1, 384, 16, 32), f32)) is None
    # threaded: the parallel module's blocks
    assert norm._block_bytes(np.empty((1, 48, 256, 512), f32)) is None


@pytest.mark.parametrize("relu", [False, True])
def test_blocks_of_channels_give_the_whole_arrays_result(relu, monkeypatch):
    from minifrrn.functional import cpu_parallel, norm
    x, g, b = data(7, shape=(2, 6, 8, 10))
    gy = np.random.default_rng(8).standard_normal(x.shape)

    def run():
        xt, gt, bt = (mf.tensor(v, dtype=np.float64, requires_grad=True) for v in (x, g, b))
        y = F.batch_norm(xt, gt, bt, None, None, True, relu=relu)
        y.backward(gy)
        return y.data, xt.grad, gt.grad, bt.grad

    whole = run()
    # every channel its own block, on one thread
    monkeypatch.setattr(cpu_parallel, "CACHE_BLOCK_BYTES", 1024)
    monkeypatch.setattr(norm, "INLINE_BLOCK_BYTES", 1)
    assert norm._block_bytes(x) == 1
    for blocked, expected in zip(run(), whole):
        np.testing.assert_array_equal(blocked, expected)


def _train_step(x, gy, relu):
    """One training-mode batch norm forward and backward in float32, with running statistics."""
    C = x.shape[1]
    rng = np.random.default_rng(3)
    xt = mf.tensor(x, requires_grad=True)
    gamma = mf.tensor(rng.uniform(0.5, 1.5, C).astype(np.float32), requires_grad=True)
    beta = mf.tensor(rng.uniform(-0.5, 0.5, C).astype(np.float32), requires_grad=True)
    running_mean, running_var = np.zeros(C, np.float32), np.ones(C, np.float32)
    y = F.batch_norm(xt, gamma, beta, running_mean, running_var, True, relu=relu)
    y.backward(gy)
    return y.data, xt.grad, gamma.grad, beta.grad, running_mean, running_var


@pytest.mark.parametrize("relu", [False, True])
def test_a_channels_result_does_not_depend_on_the_width_of_its_block(relu, monkeypatch):
    # NumPy sums a one-channel block's N·H·W values in another order than the same channel's
    # inside a wider block once N >= 8; the blocks change with the number of threads
    from minifrrn.functional import cpu_parallel, norm
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((13, 5, 8, 16)) * 3 + 1).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    whole = _train_step(x, gy, relu)
    monkeypatch.setattr(cpu_parallel, "CACHE_BLOCK_BYTES", 1024)
    monkeypatch.setattr(norm, "INLINE_BLOCK_BYTES", 1)  # every channel a block of its own
    for blocked, expected in zip(_train_step(x, gy, relu), whole):
        np.testing.assert_array_equal(blocked, expected)


def test_training_gives_the_same_bits_on_any_number_of_threads(monkeypatch):
    # (13, 96, 32, 64): 2 threads make blocks of 19, 19, 19, 19, 19 and 1 channels, 3 threads
    # blocks of 16
    rng = np.random.default_rng(12)
    x = rng.standard_normal((13, 96, 32, 64)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("MINIFRRN_CPU_THREADS", threads)
        results.append(_train_step(x, gy, relu=True))
    for other in results[1:]:
        for got, expected in zip(other, results[0]):
            np.testing.assert_array_equal(got, expected)
