"""The FRRU's equations (Pohlen et al., CVPR 2017), verified numerically (float64, small shapes).

    z_n = z_{n-1} + H(y_{n-1}, z_{n-1}; W_n),   y_n = G(y_{n-1}, z_{n-1}; W_n)
"""
import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.models import FRRN, FRRU
from minifrrn.nn import init

ZC = 3  # residual-stream channels in these tests


def chain(specs, seed=0):
    """FRRUs chained along y: specs is a list of (scale, channels); y enters with 4 channels."""
    init.manual_seed(seed)
    units, c_in = [], 4
    for s, c in specs:
        units.append(FRRU(s, c, c_in, z_channels=ZC).astype(np.float64))
        c_in = c
    return units


def rnd(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def inputs(scale, seed=1, N=2, H=8, W=8):
    y = mf.tensor(rnd((N, 4, H // scale, W // scale), seed), dtype=np.float64, requires_grad=True)
    z = mf.tensor(rnd((N, ZC, H, W), seed + 1), dtype=np.float64, requires_grad=True)
    return y, z


SPECS = [(2, 5), (2, 6), (4, 5), (4, 4)]


def make_chain_inputs(units, seed=1):
    # the y stream changes scale between units of different scales: pool/upsample like FRRN does
    return inputs(units[0].scale, seed)


def forward_chain(units, y, z):
    ys, zs, hs = [y], [z], []
    for unit in units:
        if y.shape[2] * unit.scale > z.shape[2]:
            y = F.max_pool2d(y, 2)
        hs.append(unit.residual(y, z))
        y, z = unit(y, z)
        ys.append(y)
        zs.append(z)
    return ys, zs, hs


def test_residual_stream_unrolls_to_the_sum_of_H():
    units = chain(SPECS)
    for u in units:
        u.eval()  # a fixed map: H computed separately must see the same statistics
        for b in u.buffers():
            b.data[...] = np.abs(rnd(b.shape, 7)) + 0.5
    y, z = make_chain_inputs(units)
    ys, zs, hs = forward_chain(units, y, z)
    for n in range(len(units)):
        for m in range(n + 1, len(units) + 1):
            total = sum(h.data for h in hs[n:m])
            np.testing.assert_allclose(zs[m].data - zs[n].data, total, rtol=1e-10, atol=1e-12)


def test_gradient_of_W_n_splits_over_the_two_streams():
    units = chain(SPECS, seed=2)
    y, z = make_chain_inputs(units, seed=3)
    n = 1
    # the whole chain: l = <z_m, a> + <y_m, b> with random a, b
    ys, zs, _ = forward_chain(units, y, z)
    a, b = rnd(zs[-1].shape, 4), rnd(ys[-1].shape, 5)
    (zs[-1] * a).sum().backward()
    (ys[-1] * b).sum().backward()
    full = [p.grad.copy() for p in units[n].parameters()]
    # dl/dz_n and dl/dy_n: what the later units send back to unit n's two outputs (y_n also feeds
    # unit n's own H, so its retained total gradient is not the upstream of the y output alone)
    y_n = mf.tensor(ys[n + 1].data, requires_grad=True)
    z_n = mf.tensor(zs[n + 1].data, requires_grad=True)
    tail_ys, tail_zs, _ = forward_chain(units[n + 1:], y_n, z_n)
    (tail_zs[-1] * a).sum().backward()
    (tail_ys[-1] * b).sum().backward()
    dl_dz, dl_dy = z_n.grad, y_n.grad
    # unit n alone, once with only dl/dz_n upstream, once with only dl/dy_n upstream
    y_in = mf.tensor(ys[n].data)
    z_in = mf.tensor(zs[n].data)
    if y_in.shape[2] * units[n].scale > z_in.shape[2]:
        y_in = F.max_pool2d(y_in, 2)
    unit = units[n]
    through_z, through_y = [], []
    for upstream_z, upstream_y, store in ((dl_dz, None, through_z), (None, dl_dy, through_y)):
        unit.zero_grad()
        y_out, z_out = unit(y_in, z_in)
        if upstream_z is not None:
            z_out.backward(upstream_z)
        else:
            y_out.backward(upstream_y)
        store.extend(np.zeros(p.shape) if p.grad is None else p.grad.copy()
                     for p in unit.parameters())
    for g_full, g_z, g_y in zip(full, through_z, through_y):
        np.testing.assert_allclose(g_full, g_z + g_y, rtol=1e-9, atol=1e-12)
    # and both streams really contribute (otherwise the test would be vacuous)
    assert np.abs(through_z[0]).sum() > 0 and np.abs(through_y[0]).sum() > 0


def test_identity_path_reaches_every_residual_input():
    units = chain(SPECS, seed=6)
    n = 1
    for unit in units[n:]:
        unit.to_residual.weight.data[...] = 0.0
        unit.to_residual.bias.data[...] = 0.0
    y, z = make_chain_inputs(units, seed=7)
    ys, zs, _ = forward_chain(units, y, z)
    zs[n].retain_grad()
    zs[-1].retain_grad()
    zs[-1].backward(rnd(zs[-1].shape, 8))
    np.testing.assert_array_equal(zs[n].grad, zs[-1].grad)


def test_without_G_the_chain_is_a_residual_network():
    # G's contribution removed: every unit receives y = 0, so z_n = z_{n-1} + H(0, z_{n-1}), a ResNet
    # whose block is built here from the same weights (only the z-part of the first conv matters)
    units = chain([(2, 5), (2, 5), (2, 5)], seed=9)
    z0 = mf.tensor(rnd((2, ZC, 8, 8), 10), dtype=np.float64)
    z_chain = z0
    for unit in units:
        zero_y = mf.tensor(np.zeros((2, unit.y_channels_in, 4, 4)))
        _, z_chain = unit(zero_y, z_chain)
    z_res = z0
    for unit in units:
        first, second = unit.pooling_stream[0], unit.pooling_stream[1]
        w_z = mf.tensor(first[0].weight.data[:, unit.y_channels_in:])  # weights seeing pool(z)
        h = F.conv2d(F.max_pool2d(z_res, 2), w_z, pad=1)
        bn = first[1]
        h = F.relu(F.batch_norm(h, bn.weight, bn.bias, None, None, True, eps=bn.eps))
        h = F.conv2d(h, second[0].weight, pad=1)
        bn = second[1]
        h = F.relu(F.batch_norm(h, bn.weight, bn.bias, None, None, True, eps=bn.eps))
        h = F.conv2d(h, unit.to_residual.weight, unit.to_residual.bias)
        z_res = z_res + F.upsample_nearest2d(h, 2)
    np.testing.assert_allclose(z_chain.data, z_res.data, rtol=1e-10, atol=1e-12)


def test_without_H_the_pooling_stream_is_a_plain_conv_net():
    units = chain([(2, 5), (2, 6), (2, 4)], seed=11)
    for unit in units:
        unit.to_residual.weight.data[...] = 0.0
        unit.to_residual.bias.data[...] = 0.0
    y0, z0 = inputs(2, seed=12)
    y, z = y0, z0
    for unit in units:
        y, z = unit(y, z)
    np.testing.assert_array_equal(z.data, z0.data)  # H ≡ 0: the residual stream never changes
    # a plain conv net: the constant pooled z is concatenated as extra input channels at every layer
    pooled = F.max_pool2d(z0, 2)
    x = y0
    for unit in units:
        x = F.concat([x, pooled], axis=1)
        for cbr in unit.pooling_stream:
            x = F.conv2d(x, cbr[0].weight, pad=1)
            bn = cbr[1]
            x = F.relu(F.batch_norm(x, bn.weight, bn.bias, None, None, True, eps=bn.eps))
    np.testing.assert_allclose(y.data, x.data, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_frru_gradcheck_every_input_and_parameter(training):
    init.manual_seed(13)
    unit = FRRU(2, 3, 2, z_channels=2)
    unit.train(training)
    for b in unit.buffers():
        b.data[...] = np.abs(rnd(b.shape, 14)).astype(b.dtype) + 0.5
    y = rnd((2, 2, 2, 3), 15)
    z = rnd((2, 2, 4, 6), 16)
    mf.gradcheck(unit, [y, z])  # random upstream gradients on both outputs


def test_small_frrn_directional_gradcheck_in_training_mode():
    init.manual_seed(17)
    model = FRRN(num_classes=3, encoder=[[1, 4, 2], [1, 5, 4]], decoder=[[1, 4, 2]],
                 stem_channels=3, z_channels=2, head_channels=3, stem_units=1, head_units=1)
    model.train()
    x = np.random.default_rng(18).random((2, 3, 8, 8))
    for seed in (0, 1):
        mf.gradcheck(model, [x], mode="directional", seed=seed)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpoint in (False, True):
        init.manual_seed(19)
        model = FRRN(num_classes=3, encoder=[[1, 4, 2], [1, 5, 4]], decoder=[[1, 4, 2]],
                     stem_channels=3, z_channels=2, head_channels=3, stem_units=1, head_units=1,
                     checkpoint=checkpoint).astype(np.float64)
        x = mf.tensor(rnd((2, 3, 8, 8), 20), dtype=np.float64)
        model(x).backward(rnd((2, 3, 8, 8), 21))
        grads.append([p.grad for p in model.parameters()] + [b.data for b in model.buffers()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
