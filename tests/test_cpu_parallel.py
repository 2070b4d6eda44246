"""The threaded, cache-blocked NumPy paths give the same results as the inline ones.

Real inputs only take these paths when they are large; here the thresholds are lowered so that
small shapes run through several threads and several blocks, and are checked against loops written
independently of the library and against finite differences."""
import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.functional import cpu_parallel
from minifrrn.functional.conv import col2im, im2col

from test_conv import naive_conv2d
from test_pooling import distinct, naive_max_pool


@pytest.fixture
def force_parallel(monkeypatch):
    monkeypatch.setattr(cpu_parallel, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(cpu_parallel, "CACHE_BLOCK_BYTES", 64)  # a channel or two per block
    monkeypatch.setenv("MINIFRRN_CPU_THREADS", "2")


def test_ranges_cover_everything_once():
    assert cpu_parallel.ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert cpu_parallel.ranges(2, 0) == [(0, 1), (1, 2)]


def test_run_ranges_runs_every_piece_and_reraises(force_parallel):
    seen = []
    cpu_parallel.run_ranges(lambda a, b: seen.append((a, b)), cpu_parallel.ranges(10, 3), 10)
    assert sorted(seen) == cpu_parallel.ranges(10, 3)

    def fail(a, b):
        if a == 6:
            raise ValueError("piece 6 failed")
    with pytest.raises(ValueError, match="piece 6"):
        cpu_parallel.run_ranges(fail, cpu_parallel.ranges(10, 3), 10)


def test_bad_thread_count_is_named(monkeypatch):
    monkeypatch.setenv("MINIFRRN_CPU_THREADS", "two")
    with pytest.raises(ValueError, match="MINIFRRN_CPU_THREADS must be an integer"):
        cpu_parallel.cpu_threads()


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (5, 1, 2), (1, 2, 0)])
def test_conv_forward_and_adjoint_on_the_parallel_path(force_parallel, k, s, p):
    rng = np.random.default_rng(k + s + p)
    x, W = rng.standard_normal((2, 5, 9, 8)), rng.standard_normal((3, 5, k, k))
    y = F.conv2d(mf.tensor(x), mf.tensor(W), stride=s, pad=p)
    np.testing.assert_allclose(y.data, naive_conv2d(x, W, None, (s, s), (p, p)), rtol=1e-12,
                               atol=1e-12)
    cols = im2col(x, k, k, s, s, p, p)
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose((cols * c).sum(), (x * col2im(c, x.shape, k, k, s, s, p, p)).sum(),
                               rtol=1e-12)
    mf.gradcheck(lambda x, W: F.conv2d(x, W, stride=s, pad=p), [x[:1, :3], W[:, :3]])


@pytest.mark.parametrize("k", [2, 3, 8])
def test_max_pool_on_the_parallel_path(force_parallel, k):
    x = distinct((2, 5, 2 * k, 3 * k), seed=k)
    y = F.max_pool2d(mf.tensor(x), k)
    np.testing.assert_array_equal(y.data, naive_max_pool(x, k, k))
    mf.gradcheck(lambda t: F.max_pool2d(t, k), [x[:1, :3]])


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_the_parallel_path(force_parallel, training, relu):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 4, 6)) * 2 + 1
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    running_mean, running_var = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
    mean = x.mean(axis=(0, 2, 3)) if training else running_mean
    var = x.var(axis=(0, 2, 3)) if training else running_var
    expected = ((x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-4)
                * gamma[:, None, None] + beta[:, None, None])
    if relu:
        expected = np.maximum(expected, 0)
    y = F.batch_norm(x, gamma, beta, running_mean.copy(), running_var.copy(), training, relu=relu)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    mf.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, running_mean.copy(), running_var.copy(),
                                              training, relu=relu), [x, gamma, beta])


@pytest.mark.parametrize("scale", [2, 16])
def test_nearest_upsampling_on_the_parallel_path(force_parallel, scale):
    rng = np.random.default_rng(scale)
    x = mf.tensor(rng.standard_normal((2, 5, 3, 2)), requires_grad=True)
    gy = rng.standard_normal((2, 5, 3 * scale, 2 * scale))
    y = F.upsample_nearest2d(x, scale)
    y.backward(gy)
    np.testing.assert_array_equal(y.data, x.data.repeat(scale, axis=2).repeat(scale, axis=3))
    block_sums = gy.reshape(2, 5, 3, scale, 2, scale).sum(axis=(3, 5))
    np.testing.assert_allclose(x.grad, block_sums, rtol=1e-12, atol=1e-12)


def test_allocator_tuning_reports_what_it_did():
    import sys
    from minifrrn.backend import tune_cpu_allocator
    result = tune_cpu_allocator()
    assert isinstance(result, bool)
    if sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver()):
        assert result  # glibc has mallopt: the settings must have been accepted


def test_over_channels_gives_every_thread_two_blocks_and_runs_small_work_in_one(monkeypatch):
    monkeypatch.setattr(cpu_parallel, "CACHE_BLOCK_BYTES", 1 << 30)  # the cache would take it all
    monkeypatch.setenv("MINIFRRN_CPU_THREADS", "2")
    big = np.zeros((1, 8, 4, 4), np.float32)
    for threshold, expected in ((0, [(0, 2), (2, 4), (4, 6), (6, 8)]), (1 << 20, [(0, 8)])):
        monkeypatch.setattr(cpu_parallel, "MIN_PARALLEL_ELEMENTS", threshold)
        seen = []
        cpu_parallel.over_channels(lambda c0, c1: seen.append((c0, c1)), big)
        assert sorted(seen) == expected


def test_a_failed_share_is_raised_only_once_every_share_has_finished(force_parallel):
    import threading
    import time
    released, written = threading.Event(), []

    def work(start, stop):
        if start == 0:
            released.set()
            raise ValueError("the first share failed")
        released.wait(5)  # until the first share has failed: the caller must wait for this one
        time.sleep(0.05)
        written.append(start)

    with pytest.raises(ValueError, match="first share"):
        cpu_parallel.run_ranges(work, [(0, 1), (1, 2)], 2)
    assert written == [1]  # the second share was done before the exception reached the caller


def test_a_parallel_op_inside_a_parallel_op_runs_inline_instead_of_waiting_for_ever(force_parallel):
    import threading
    inner = []

    def outer(start, stop):
        cpu_parallel.run_ranges(lambda a, b: inner.append(threading.current_thread().name),
                                cpu_parallel.ranges(4, 1), 4)

    result = []
    caller = threading.Thread(target=lambda: result.append(
        cpu_parallel.run_ranges(outer, cpu_parallel.ranges(2, 1), 2)))
    caller.start()
    caller.join(10)
    assert not caller.is_alive() and len(inner) == 8
