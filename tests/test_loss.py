import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F


def logits_targets(seed=0, shape=(2, 4, 3, 5), void=True):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(shape)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if void:
        t[0, 0, :2] = 255
    return f, t


def naive_pixel_losses(f, t):
    out = np.zeros(t.shape)
    for n in range(t.shape[0]):
        for i in range(t.shape[1]):
            for j in range(t.shape[2]):
                if t[n, i, j] != 255:
                    z = f[n, :, i, j]
                    out[n, i, j] = np.log(np.exp(z - z.max()).sum()) + z.max() - z[t[n, i, j]]
    return out


def test_cross_entropy_is_the_mean_over_valid_pixels():
    f, t = logits_targets()
    loss = F.cross_entropy(mf.tensor(f, dtype=np.float64), t).item()
    np.testing.assert_allclose(loss, naive_pixel_losses(f, t)[t != 255].mean(), rtol=1e-12)


def test_bootstrapped_takes_the_k_largest_per_image():
    f, t = logits_targets(1)
    k = 4
    losses = naive_pixel_losses(f, t)
    expected = np.mean([np.sort(losses[n][t[n] != 255])[-k:].mean() for n in range(2)])
    got = F.bootstrapped_cross_entropy(mf.tensor(f, dtype=np.float64), t, k=k).item()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bootstrapped_equals_cross_entropy_when_k_covers_all_valid_pixels():
    f, t = logits_targets(2, shape=(1, 3, 4, 4))
    a = F.cross_entropy(mf.tensor(f, dtype=np.float64), t).item()
    b = F.bootstrapped_cross_entropy(mf.tensor(f, dtype=np.float64), t, k=1000).item()
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_default_k_is_a_sixteenth_of_the_pixels():
    f, t = logits_targets(3, shape=(1, 3, 8, 8), void=False)
    losses = naive_pixel_losses(f, t)[0].ravel()
    got = F.bootstrapped_cross_entropy(mf.tensor(f, dtype=np.float64), t).item()
    np.testing.assert_allclose(got, np.sort(losses)[-4:].mean(), rtol=1e-12)


def test_gradient_is_zero_on_void_and_unselected_pixels():
    f, t = logits_targets(4)
    x = mf.tensor(f, dtype=np.float64, requires_grad=True)
    F.bootstrapped_cross_entropy(x, t, k=3).backward()
    touched = np.abs(x.grad).sum(axis=1) > 0
    assert not touched[t == 255].any()
    assert touched.reshape(2, -1).sum(axis=1).tolist() == [3, 3]


@pytest.mark.parametrize("loss", [lambda f, t: F.cross_entropy(f, t),
                                  lambda f, t: F.bootstrapped_cross_entropy(f, t, k=5),
                                  lambda f, t: F.log_softmax(f)])
def test_gradcheck(loss):
    f, t = logits_targets(5)
    mf.gradcheck(loss, [f, t])


def test_stable_for_huge_logits():
    f, t = logits_targets(6)
    for loss in (F.cross_entropy, F.bootstrapped_cross_entropy):
        x = mf.tensor(f * 1e4, requires_grad=True)  # float32
        value = loss(x, t)
        value.backward()
        assert np.isfinite(value.item()) and np.isfinite(x.grad).all()
    assert np.isfinite(F.log_softmax(mf.tensor(f * 1e4)).data).all()


def test_all_void_gives_zero_loss_and_gradient():
    f, _ = logits_targets(7)
    t = np.full((2, 3, 5), 255)
    x = mf.tensor(f, requires_grad=True)
    loss = F.cross_entropy(x, t)
    loss.backward()
    assert loss.item() == 0 and not x.grad.any()


def test_bad_targets():
    f, t = logits_targets(8)
    t[1, 1, 1] = 7
    with pytest.raises(ValueError, match="target holds 7"):
        F.cross_entropy(mf.tensor(f), t)
    with pytest.raises(ValueError, match="target must have shape"):
        F.cross_entropy(mf.tensor(f), t[0])
    with pytest.raises(TypeError, match="integer class ids"):
        F.cross_entropy(mf.tensor(f), t.astype(np.float32))
