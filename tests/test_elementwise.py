"""Gradient checks (float64 central differences, random upstream gradients) of every elementwise,
reduction and shape op, on shapes that exercise broadcasting."""
import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F


def rnd(*shape, seed=0, positive=False):
    a = np.random.default_rng(seed).standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3))]


@pytest.mark.parametrize("op", [F.add, F.sub, F.mul, F.div])
@pytest.mark.parametrize("shapes", BINARY_SHAPES)
def test_binary_ops_gradcheck_with_broadcasting(op, shapes):
    a = rnd(*shapes[0], seed=1)
    b = rnd(*shapes[1], seed=2, positive=op is F.div)
    mf.gradcheck(op, [a, b])


@pytest.mark.parametrize("op,positive", [(F.neg, False), (F.exp, False), (F.log, True)])
def test_unary_ops_gradcheck(op, positive):
    mf.gradcheck(op, [rnd(2, 3, 2, seed=3, positive=positive)])


def test_relu_gradcheck_away_from_zero():
    x = rnd(3, 5, seed=4)
    x[np.abs(x) < 0.1] = 0.5  # finite differences are meaningless across the kink
    mf.gradcheck(F.relu, [x])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5])
def test_pow_gradcheck(exponent):
    mf.gradcheck(lambda x: x ** exponent, [rnd(2, 4, seed=5, positive=True)])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                           (-1, True)])
@pytest.mark.parametrize("op", [F.sum, F.mean])
def test_reductions_gradcheck(op, axis, keepdims):
    mf.gradcheck(lambda x: op(x, axis=axis, keepdims=keepdims), [rnd(2, 3, 4, seed=6)])


def test_reshape_transpose_gradcheck():
    mf.gradcheck(lambda x: F.transpose(F.reshape(x, (4, 6)), (1, 0)), [rnd(2, 3, 4, seed=7)])
    mf.gradcheck(lambda x: x.transpose(2, 0, 1), [rnd(2, 3, 4, seed=8)])


def test_concat_gradcheck():
    mf.gradcheck(lambda a, b, c: F.concat([a, b, c], axis=1),
                 [rnd(2, 1, 3, seed=9), rnd(2, 2, 3, seed=10), rnd(2, 3, 3, seed=11)])


@pytest.mark.parametrize("index", [(slice(1, 3), Ellipsis), (0, slice(None, None, 2)),
                                   (np.array([0, 2, 0]),), (np.array([[True, False, True, False]] * 3),)])
def test_getitem_gradcheck(index):
    mf.gradcheck(lambda x: x[index if len(index) > 1 else index[0]], [rnd(3, 4, seed=12)])


def test_getitem_repeated_indices_sum_their_gradients():
    x = mf.tensor(rnd(3, seed=13), requires_grad=True)
    x[np.array([1, 1, 2])].backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad, [0.0, 3.0, 3.0])


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul_gradcheck(sa, sb):
    mf.gradcheck(F.matmul, [rnd(*sa, seed=14), rnd(*sb, seed=15)])


def test_tensor_operators_match_numpy():
    a, b = rnd(2, 3, seed=16), rnd(2, 3, seed=17, positive=True)
    ta, tb = mf.tensor(a, dtype=np.float64), mf.tensor(b, dtype=np.float64)
    np.testing.assert_allclose((ta + tb * 2 - 1 / tb).data, a + b * 2 - 1 / b)
    np.testing.assert_allclose((-ta ** 2).data, -(a ** 2))
    np.testing.assert_allclose((ta @ tb.T).data, a @ b.T)
    np.testing.assert_allclose((2 - ta).data, 2 - a)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="cannot reshape"):
        F.reshape(mf.tensor(np.ones(6)), (4, 2))
    with pytest.raises(ValueError, match="inner dimensions"):
        F.matmul(mf.tensor(np.ones((2, 3))), mf.tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match="does not match"):
        F.concat([mf.tensor(np.ones((2, 3))), mf.tensor(np.ones((3, 2)))], axis=0)


def test_power_zero_has_a_zero_gradient_everywhere():
    x = mf.tensor(np.array([0.0, 1.5, -2.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros(3))


@pytest.mark.parametrize("base", [2, 0.3, np.float64(7.5)])
def test_number_to_the_power_of_a_tensor_gradcheck(base):
    x = mf.tensor(rnd(3, 4, seed=11), requires_grad=True)
    out = base ** x
    np.testing.assert_allclose(out.data, float(base) ** x.data, rtol=1e-12)
    mf.gradcheck(lambda x: base ** x, [x])


@pytest.mark.parametrize("base", [0, -2.0])
def test_number_to_the_power_of_a_tensor_needs_a_positive_base(base):
    with pytest.raises(ValueError, match="positive base"):
        base ** mf.tensor(rnd(3, seed=12))



def test_operands_that_do_not_broadcast_are_named_with_their_shapes():
    x = mf.tensor(np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="add: shapes \\(2, 3, 8, 8\\) and \\(4, 8, 8\\) do not "
                                         "broadcast"):
        x + mf.tensor(np.ones((4, 8, 8), np.float32))


def test_concat_refuses_an_axis_out_of_range_and_a_lone_tensor():
    a = mf.tensor(rnd(3, 3, seed=14))
    with pytest.raises(ValueError, match="axis 5 is out of range for inputs of 2 axes"):
        F.concat([a, a], axis=5)
    with pytest.raises(TypeError, match="got one tensor: pass \\[a, b\\]"):
        F.concat(a)
    assert F.concat([a, a], axis=-1).shape == (3, 6)


def test_conv2d_names_the_bias_when_its_dtype_differs():
    x, W = (mf.tensor(np.ones(s, np.float32)) for s in ((1, 2, 3, 3), (2, 2, 1, 1)))
    with pytest.raises(TypeError, match="the bias is float64 but the weights are float32"):
        F.conv2d(x, W, mf.tensor(np.ones(2)))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # NumPy's, for the NaN forward
def test_the_mean_over_an_empty_axis_has_an_empty_gradient():
    t = mf.tensor(np.zeros((0, 3)), requires_grad=True)
    with np.errstate(invalid="ignore"):
        out = F.mean(t, axis=0)
    out.backward(np.ones(3))
    assert t.grad.shape == (0, 3)


@pytest.mark.parametrize("op", [F.exp, F.log])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_, np.float16])
def test_exp_and_log_refuse_integer_tensors(op, dtype):
    # NumPy would compute exp of uint8 in float16 (exp(12) = inf) and of int32 in float64
    with pytest.raises(TypeError, match=f"x must be float32 or float64, got {np.dtype(dtype)}: "
                                        "cast it first"):
        op(mf.tensor(np.array([12, 1], dtype)))
