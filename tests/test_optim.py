"""Optimisers against hand-computed steps on f(p) = ½·Σ a·p² (gradient a·p)."""
import numpy as np
import pytest

import minifrrn as mf
from minifrrn.optim import SGD, Adam, CosineLR, PolyLR, StepLR

A = np.array([1.0, 3.0])


def run(optimizer_cls, steps, **kw):
    p = mf.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optimizer_cls([p], **kw)
    for _ in range(steps):
        opt.zero_grad()
        (mf.tensor(A / 2) * p * p).sum().backward()
        opt.step()
    return p.data, opt


def test_sgd_momentum_by_hand():
    got, _ = run(SGD, 2, lr=0.1, momentum=0.5)
    p = np.array([1.0, -2.0])
    g1 = A * p                       # [1, -6]
    v1 = g1
    p1 = p - 0.1 * v1                # [0.9, -1.4]
    g2 = A * p1                      # [0.9, -4.2]
    v2 = 0.5 * v1 + g2               # [1.4, -7.2]
    p2 = p1 - 0.1 * v2               # [0.76, -0.68]
    np.testing.assert_allclose(got, p2)
    np.testing.assert_allclose(got, [0.76, -0.68])


def test_adam_by_hand():
    got, _ = run(Adam, 2, lr=0.01)
    p = np.array([1.0, -2.0])
    m = v = np.zeros(2)
    for t in (1, 2):
        g = A * p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(got, p, rtol=1e-10)
    # the very first Adam step moves every coordinate by about lr against the gradient's sign
    first, _ = run(Adam, 1, lr=0.01)
    np.testing.assert_allclose(first, [0.99, -1.99], rtol=1e-6)


def test_optimizer_state_round_trip_continues_identically():
    a, opt_a = run(Adam, 3, lr=0.01)
    p = mf.tensor(a.copy(), requires_grad=True)
    opt = Adam([p], lr=0.5)
    opt.load_state_dict(opt_a.state_dict())
    assert opt.lr == 0.01 and opt.steps == 3
    for o, q in ((opt, p), (opt_a, opt_a.params[0])):
        o.zero_grad()
        (mf.tensor(A / 2) * q * q).sum().backward()
        o.step()
    np.testing.assert_array_equal(p.data, opt_a.params[0].data)


def test_parameters_without_gradients_are_skipped():
    p = mf.tensor(np.ones(2), requires_grad=True)
    SGD([p], lr=1.0).step()
    np.testing.assert_array_equal(p.data, [1.0, 1.0])


def test_schedules():
    p = mf.tensor(np.ones(1), requires_grad=True)
    opt = Adam([p], lr=1e-3)
    step = StepLR(opt, milestones=(45_000,))
    assert step.lr_at(44_999) == 1e-3 and step.lr_at(45_000) == pytest.approx(1e-4)
    assert PolyLR(opt, 100).lr_at(50) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert CosineLR(opt, 100).lr_at(100) == pytest.approx(0.0)
    assert CosineLR(opt, 100).lr_at(50) == pytest.approx(0.5e-3)
    step.step()
    state = step.state_dict()
    other = StepLR(Adam([p], lr=5.0), milestones=(1,))
    other.load_state_dict(state)
    assert other.optimizer.lr == pytest.approx(1e-4)


def test_bad_learning_rate():
    with pytest.raises(ValueError, match="learning rate"):
        SGD([mf.tensor(np.ones(1), requires_grad=True)], lr=0)


@pytest.mark.parametrize("schedule", [CosineLR, PolyLR])
@pytest.mark.parametrize("total", [0, -5, 2.5])
def test_schedules_need_a_positive_whole_number_of_steps(schedule, total):
    optimizer = SGD([mf.tensor(np.ones(2, np.float32), requires_grad=True)], lr=0.1)
    message = f"{schedule.__name__}: total_steps must be an integer >= 1, got {total}"
    with pytest.raises(ValueError, match=message):
        schedule(optimizer, total)


def test_state_dict_is_a_snapshot_that_later_steps_leave_alone():
    p = mf.tensor(np.random.default_rng(40).standard_normal(3).astype(np.float32),
                  requires_grad=True)
    opt = Adam([p], lr=0.1)
    p.grad = np.ones(3, np.float32)
    opt.step()
    state = opt.state_dict()
    first_moment = state["m.0"].copy()
    p.grad = np.full(3, -2.0, np.float32)
    opt.step()
    np.testing.assert_array_equal(state["m.0"], first_moment)


def test_a_parameter_listed_twice_is_updated_once():
    p = mf.tensor(np.zeros(2, np.float32), requires_grad=True)
    opt = SGD([p, p], lr=0.5, momentum=0.0)
    p.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, [-0.5, -0.5])


@pytest.mark.parametrize("make,error,message", [
    (lambda m: Adam(m), TypeError, "Adam: params must be an iterable of Parameters, got Conv2d: "
                                   "pass model.parameters()"),
    (lambda m: SGD(m.parameters, lr=0.1), TypeError, "pass model.parameters()"),
    (lambda m: Adam([np.ones(3)]), TypeError, "must be Parameters .* got a ndarray"),
    (lambda m: Adam(m.parameters(), lr=None), ValueError, "learning rate must be a positive finite"),
    (lambda m: Adam(m.parameters(), lr=float("nan")), ValueError, "learning rate must be a positive"),
    (lambda m: Adam(m.parameters(), betas=(1.0, 0.999)), ValueError, "beta1 must be in \\[0, 1\\)"),
    (lambda m: Adam(m.parameters(), betas=0.9), ValueError, "betas must be a pair"),
    (lambda m: Adam(m.parameters(), eps=-1e-8), ValueError, "eps must be a finite number >= 0"),
    (lambda m: StepLR(Adam(m.parameters()), 45_000), TypeError, "write \\(45000,\\)")])
def test_optimizers_and_schedules_refuse_what_they_cannot_use(make, error, message):
    with pytest.raises(error, match=message):
        make(mf.nn.Conv2d(2, 2, 1))


def test_adam_takes_the_edges_of_its_ranges():
    # beta1 = 0 is Adam without momentum, eps = 0 no guard: both well defined
    p = mf.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = Adam([p], lr=0.1, betas=np.array([0.0, 0.999]), eps=0.0)
    (mf.tensor(A / 2) * p * p).sum().backward()
    opt.step()
    # m = g and v̂ = g² after one step: p moves by lr against the sign of its gradient
    np.testing.assert_allclose(p.data, [0.9, -1.9])


def test_optimiser_state_follows_a_model_cast_after_it_was_made():
    # float32 steps, then the model is cast to float64 (for a gradient check, say): the moments
    # must not round the float64 gradients back to float32 in place
    rng = np.random.default_rng(4)
    net = mf.nn.Conv2d(2, 3, 3)
    opt = Adam(net.parameters(), lr=1e-2)  # its moments are updated in place
    x = rng.standard_normal((1, 2, 5, 5))
    net(mf.tensor(x.astype(np.float32))).sum().backward()
    opt.step()
    net.astype(np.float64)
    opt.zero_grad()
    net(mf.tensor(x)).sum().backward()
    opt.step()
    for name in opt._state_names:
        assert all(a.dtype == np.float64 for a in getattr(opt, name) if a is not None)
    assert all(p.dtype == np.float64 for p in net.parameters())
