"""The autograd engine: graph order, accumulation, memory habits and its checks."""
import gc
import weakref

import numpy as np
import pytest

import minifrrn as mf
from minifrrn.autograd import Function


def leaf(shape, seed=0, dtype=np.float64):
    return mf.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype,
                     requires_grad=True)


def test_reused_non_leaf_gets_summed_gradient():
    # b = a + a; c = b + b  =>  dc/da = 4, and it must arrive only once b has all its gradient
    a = leaf((3, 2))
    b = a + a
    c = b + b
    upstream = np.random.default_rng(1).standard_normal((3, 2))
    c.backward(upstream)
    np.testing.assert_allclose(a.grad, 4 * upstream)


def test_diamond_graph_uses_generation_order():
    # y = exp(x); z = y * y + y: a depth-first recursion would hand y's gradient on before the
    # second path contributed
    x = leaf((4,), seed=2)
    y = x.exp()
    z = y * y + y
    gz = np.random.default_rng(12).standard_normal(4)  # random: a backward that dropped it shows
    z.backward(gz)
    ex = np.exp(x.data)
    np.testing.assert_allclose(x.grad, gz * (2 * ex * ex + ex))


def test_deep_chain_does_not_recurse():
    x = leaf((2,), seed=3)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001 ** 20_000), rtol=1e-9)


def test_gradients_accumulate_across_backward_calls():
    x = leaf((3,), seed=4)
    (x * 3.0).sum().backward()
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 5.0))
    x.zero_grad()
    assert x.grad is None


def test_same_graph_backward_twice_accumulates():
    x = leaf((3,), seed=5)
    y = (x * x).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_intermediate_gradients_are_freed_unless_retained():
    x = leaf((3,), seed=6)
    h = x * 2.0
    kept = (x * 3.0).retain_grad()
    (h + kept).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(kept.grad, np.ones(3))


def test_no_grad_records_nothing():
    x = leaf((3,), seed=7)
    with mf.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.creator is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_intermediate_data_is_not_kept_by_the_graph():
    # exp saves its output, add saves nothing: after dropping the tensor `a`, its data is freed
    x = leaf((1000,), seed=8)
    a = x * 2.0                    # Mul with a constant: saves the constant only
    ref = weakref.ref(a.data)      # NumPy arrays take weak references (they have no __weakref__)
    b = a + 1.0
    del a
    gc.collect()
    assert ref() is None, "the graph kept an intermediate array that no backward needs"
    b.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(1000, 2.0))


def test_non_scalar_backward_needs_a_gradient():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match="needs a tensor with one element"):
        (x * 2.0).backward()


class _WrongShapeBackward(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy.sum(axis=0)  # wrong: loses a dimension


class _WrongDtypeBackward(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return (gy * 2).astype(np.float32)


def test_engine_rejects_gradient_of_wrong_shape():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match="shape"):
        _WrongShapeBackward()(x).backward(np.ones((2, 3)))


def test_engine_rejects_gradient_of_wrong_dtype():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match="dtype"):
        _WrongDtypeBackward()(x).backward(np.ones((2, 3)))


def test_upstream_gradient_shape_is_checked():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2.0).backward(np.ones((3, 2)))


def test_broadcast_gradient_is_summed_back():
    x = leaf((2, 3), seed=9)
    b = leaf((3,), seed=10)
    g = np.random.default_rng(11).standard_normal((2, 3))
    (x * b).backward(g)
    np.testing.assert_allclose(b.grad, (g * x.data).sum(axis=0))


def test_scalars_keep_the_tensor_dtype():
    x = mf.tensor(np.ones(3, np.float32) * 1.5, requires_grad=True)
    y = 2 * x + 1
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_mixed_float_dtypes_are_rejected():
    a = mf.tensor(np.ones(2, np.float32))
    b = mf.tensor(np.ones(2, np.float64))
    with pytest.raises(TypeError, match="dtypes float32 and float64"):
        a + b


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        mf.tensor(np.arange(3), requires_grad=True)


@pytest.mark.parametrize("values", [np.array(["1.5", "2"]), np.array([1 + 2j]),
                                    np.array([None, 1.0], dtype=object)], ids=["str", "complex", "object"])
def test_non_numeric_arrays_are_refused(values):
    with pytest.raises(TypeError, match=f"bool, integer or floating-point values, got dtype "
                                        f"{values.dtype}"):
        mf.tensor(values)


def test_bool_and_integer_tensors_are_kept():
    # masks and label maps are tensors too, with their own dtypes
    assert mf.tensor(np.array([True, False])).dtype == np.bool_
    assert mf.tensor(np.arange(3, dtype=np.uint8)).dtype == np.uint8


class _FakeCupyArray:
    """Stands in for a CuPy array: the backend decides by the type's module."""


_FakeCupyArray.__module__ = "cupy._core.core"


def test_mixing_numpy_and_cupy_arrays_is_a_clear_type_error():
    with pytest.raises(TypeError, match="different devices.*to\\('cpu'\\)"):
        mf.get_array_module(np.ones(2), _FakeCupyArray())


def test_each_leaf_gets_a_gradient_array_of_its_own():
    a, b = leaf((3,), seed=40), leaf((3,), seed=41)
    (a + b).sum().backward()  # the addition hands one array to both inputs
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 0.5
    np.testing.assert_allclose(b.grad, np.ones(3))
    x = leaf((3,), seed=42)
    upstream = np.random.default_rng(43).standard_normal(3)
    (x + 0.0).backward(upstream)  # passed straight through
    assert not np.shares_memory(x.grad, upstream)
    np.testing.assert_allclose(x.grad, upstream)


def test_no_grad_in_one_thread_leaves_the_others_recording():
    import threading
    x = leaf((2,), seed=44)
    inside, leave = threading.Event(), threading.Event()

    def infer():
        with mf.no_grad():
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=infer)
    worker.start()
    inside.wait(10)
    try:
        assert (x * 2.0).requires_grad
    finally:
        leave.set()
        worker.join()


def test_an_integer_tensor_refuses_a_number_it_cannot_hold():
    i = mf.tensor(np.array([1, 2, 3]))
    np.testing.assert_array_equal((i * 2).data, [2, 4, 6])  # exact: fine
    for op in (lambda t: t * 2.5, lambda t: t + 0.5, lambda t: t ** 0.5):
        with pytest.raises(TypeError, match="which int64 cannot hold"):
            op(i)


def test_a_number_beyond_an_integer_dtype_is_a_type_error():
    u = mf.tensor(np.array([1, 2], np.uint8))
    for number in (300, -1):
        with pytest.raises(TypeError, match="which uint8 cannot hold"):
            u + number


def test_backward_takes_a_number_as_the_upstream_gradient_of_a_scalar():
    x = mf.tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x * x).sum().backward(2.0)
    np.testing.assert_array_equal(x.grad, [6.0, -8.0])


def test_astype_to_a_float_is_part_of_the_graph_and_to_an_integer_a_constant():
    x = mf.tensor(np.array([1.5, -2.0], np.float32), requires_grad=True)
    h = x * 3
    (h.astype(np.float64) ** 2).sum().backward()  # the cast used to cut the graph: no gradient
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 18 * x.data)
    wide = mf.tensor(np.array([0.5, 1.0]), requires_grad=True)  # float64 down to float32
    (wide.astype(np.float32) * 3).sum().backward(np.float32(2))
    assert wide.grad.dtype == np.float64
    np.testing.assert_array_equal(wide.grad, [6.0, 6.0])
    labels = x.astype(np.int64)
    assert labels.dtype == np.int64 and not labels.requires_grad


def test_a_retained_gradient_is_its_own_array():
    x = mf.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = x + 0.0
    b.retain_grad()
    upstream = np.array([3.0, 4.0])
    b.backward(upstream)
    upstream[...] = 7
    x.grad[...] = 99
    np.testing.assert_array_equal(b.grad, [3.0, 4.0])


def test_the_gradient_of_a_0d_leaf_is_an_array_that_can_be_changed_in_place():
    x = mf.tensor(np.array(2.0, np.float32), requires_grad=True)
    (x * x).backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.dtype == np.float32 and x.grad == 4
    x.grad[...] = 0
    (x * x).backward()
    (x * x).backward()
    assert isinstance(x.grad, np.ndarray) and x.grad == 8


def test_numpy_numbers_work_as_python_numbers_do():
    x = mf.tensor(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), requires_grad=True)
    np.testing.assert_array_equal((x * np.int64(2)).data, (x * 2).data)
    assert (x * np.int64(2)).dtype == np.float32
    np.testing.assert_array_equal(x.sum(axis=np.int64(0)).data, [4.0, 6.0])
    with pytest.raises(ValueError, match="names one axis twice"):
        x.sum(axis=(0, 0))
    with pytest.raises(TypeError, match="complex128"):  # not cut to its real part
        x * np.complex128(2 + 1j)


def test_requires_grad_turned_on_after_the_op_names_the_likely_cause():
    x = mf.tensor(np.array([1.0, 2.0]))
    w = mf.tensor(np.array([3.0, 4.0]), requires_grad=True)
    y = (x * w).sum()
    x.requires_grad = True
    with pytest.raises(RuntimeError, match="turned on after the op ran, .* run the op again"):
        y.backward()


def test_a_backward_that_forgets_a_gradient_is_told_so():
    class ForgetsW(Function):
        def forward(self, x, w):
            return x * w

        def backward(self, gy):
            return gy, None

    x, w = (mf.tensor(np.array([1.0, 2.0]), requires_grad=True) for _ in range(2))
    with pytest.raises(RuntimeError, match="its backward must return one for every input"):
        ForgetsW()(x, w).sum().backward()


def test_a_function_object_called_twice_is_refused_rather_than_losing_gradients():
    from minifrrn.functional.elementwise import Exp
    x = mf.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    exp = Exp()
    y = exp(x)
    with pytest.raises(RuntimeError, match="already called.*new one for each call"):
        exp(y)  # used to overwrite the first call's inputs: x.grad stayed None
    with mf.no_grad():
        unrecorded = Exp()
        unrecorded(x)
        with pytest.raises(RuntimeError, match="already called"):
            unrecorded(x)
    Exp()(Exp()(x)).sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(np.exp(x.data)) * np.exp(x.data))


def test_in_place_operators_change_the_data_where_no_graph_is_recorded():
    rng = np.random.default_rng(5)
    start = rng.standard_normal(4)
    w = mf.tensor(start.copy(), requires_grad=True)
    (w * w).sum().backward()
    data = w.data
    with mf.no_grad():  # the update a user writes by hand, as in PyTorch
        w -= 0.5 * w.grad
        w *= 3
        w /= mf.tensor(np.full(4, 2.0))
        w += 1
    # the same leaf and the same array: an optimiser or a model holding w sees the update
    assert w.data is data and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.data, (start - 0.5 * 2 * start) * 3 / 2 + 1)


def test_in_place_operators_while_recording():
    rng = np.random.default_rng(7)
    w = mf.tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="under `with mf.no_grad\\(\\):`"):
        w -= 0.1
    x = mf.tensor(rng.standard_normal(3), requires_grad=True)
    total = (x * x).sum()
    total += (2 * x).sum()  # accumulating a loss: a new tensor of the graph
    total.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 2)


def test_in_place_operators_keep_shape_and_dtype():
    t = mf.tensor(np.zeros((2, 3), np.float32))
    i = mf.tensor(np.arange(3))
    with mf.no_grad():
        with pytest.raises(ValueError, match=r"keep t's shape \(2, 3\)"):
            t += np.ones((4, 2, 3), np.float32)
        with pytest.raises(TypeError, match="dtype int64"):
            i /= 2
        with pytest.raises(TypeError, match="cannot hold"):
            i += 2.5
        frozen = mf.tensor(np.broadcast_to(np.float32(1), (3,)))
        with pytest.raises(ValueError, match="read-only"):
            frozen += 1


def test_in_place_never_changes_what_a_recorded_graph_or_a_caller_holds():
    rng = np.random.default_rng(10)
    batch = rng.standard_normal(3).astype(np.float32)
    original = batch.copy()
    x = mf.tensor(batch)  # wraps the caller's array
    w = mf.tensor(np.ones(3, np.float32), requires_grad=True)
    loss = (x * w).sum()  # saves x's values for w's gradient
    x /= 2  # while recording: a new tensor, as x = x / 2
    loss.backward()
    np.testing.assert_array_equal(w.grad, original)
    np.testing.assert_array_equal(batch, original)
    np.testing.assert_array_equal(x.data, original / 2)
    v = mf.tensor(rng.standard_normal(3), requires_grad=True)
    y = v.exp()  # Exp keeps its output for backward
    with mf.no_grad():
        with pytest.raises(RuntimeError, match="made by a recorded op"):
            y *= 2
    y.sum().backward()
    np.testing.assert_allclose(v.grad, np.exp(v.data))


def test_item_assignment_only_under_no_grad_and_only_on_leaves():
    rng = np.random.default_rng(13)
    w = mf.tensor(np.ones(4, np.float32), requires_grad=True)
    x = mf.tensor(rng.standard_normal(4).astype(np.float32))
    saved = x.data.copy()
    y = (w * x).sum()  # saves x's values for w's gradient
    with pytest.raises(RuntimeError, match="while gradients are recorded"):
        x[1:3] += 10  # would change what Mul saved
    buffer = mf.tensor(np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="while gradients are recorded"):
        buffer[0:2] = w[:2] * 2  # would drop w's gradient
    y.backward()
    np.testing.assert_array_equal(w.grad, saved)
    np.testing.assert_array_equal(x.data, saved)
    h = w * w
    with mf.no_grad():
        with pytest.raises(RuntimeError, match="made by a recorded op"):
            h[0] = 100.0
        t = mf.tensor(np.zeros(4, np.float32))
        t[1:3] += 1  # getitem, add, then setitem: t changes once, whole
        w[mf.tensor(np.array([0, 3]))] = np.float32(5.0)
        counts = mf.tensor(np.zeros(2, np.int64))
        with pytest.raises(TypeError, match="cannot hold"):
            counts[0] = 2.5
    np.testing.assert_array_equal(t.data, [0, 1, 1, 0])
    np.testing.assert_array_equal(w.data, [5, 1, 1, 5])


def test_truth_values_and_conversions_of_one_element():
    assert not mf.tensor([0.0]) and mf.tensor(2.0)
    assert float(mf.tensor([[1.5]])) == 1.5 and int(mf.tensor(3)) == 3
    with pytest.raises(ValueError, match="ambiguous"):
        bool(mf.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="one element"):
        float(mf.tensor([1.0, 2.0]))


def test_numpy_reads_a_tensor_as_its_values_and_refuses_ufuncs():
    rng = np.random.default_rng(8)
    values = rng.standard_normal((2, 3)).astype(np.float32)
    t = mf.tensor(values, requires_grad=True)
    converted = np.asarray(t)
    assert converted.dtype == np.float32 and np.array_equal(converted, values)
    assert np.allclose(t, values)
    expected = values.copy()
    copied = np.array(t)  # asks for a copy, and must get one
    with mf.no_grad():
        t -= 1  # changes values too: the tensor wraps that array
    np.testing.assert_array_equal(copied, expected)
    assert np.shares_memory(np.asarray(t), t.data)
    with pytest.raises(ValueError, match="without a copy"):
        np.asarray(t, dtype=np.float64, copy=False)
    with pytest.raises(TypeError):
        np.exp(t)  # would return an array cut from the graph
    total = values + t  # an array on the left still gives a tensor of the graph
    assert isinstance(total, mf.Tensor) and total.requires_grad


def test_transpose_of_two_axes_swaps_them_as_pytorch_does():
    rng = np.random.default_rng(9)
    m = mf.tensor(rng.standard_normal((2, 3)))
    assert m.transpose(0, 1).shape == (3, 2) and m.transpose(1, 0).shape == (3, 2)
    x = mf.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    swapped = x.transpose(0, 2)
    np.testing.assert_array_equal(swapped.data, x.data.swapaxes(0, 2))
    assert x.transpose(2, 0, 1).shape == (4, 2, 3) and x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose((1, 0, 2)).shape == (3, 2, 4)
    g = rng.standard_normal((4, 3, 2))
    swapped.backward(g)
    np.testing.assert_array_equal(x.grad, g.swapaxes(0, 2))
    with pytest.raises(ValueError, match="integers from -3 to 2"):
        x.transpose(0, 3)
    with pytest.raises(ValueError, match="not a permutation"):
        mf.tensor(1.0).transpose(0)
