import numpy as np
import pytest

import minifrrn as mf
from minifrrn import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, bias=True)
        self.bn = nn.BatchNorm2d(3)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 2, 1))

    def forward(self, x):
        return self.body(self.bn(self.conv(x)))


def test_parameters_and_buffers_are_separate():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "body.1.weight"]
    assert [n for n, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert all(p.requires_grad for p in net.parameters())
    assert not any(b.requires_grad for b in net.buffers())


def test_state_dict_round_trip_restores_outputs():
    x = mf.tensor(np.random.default_rng(0).random((2, 2, 5, 5)).astype(np.float32))
    a, b = Net(), Net()
    a(x)  # move the running statistics
    a.eval()
    b.load_state_dict(a.state_dict())
    b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_strict_load_names_the_key():
    net = Net()
    state = net.state_dict()
    del state["bn.running_var"]
    with pytest.raises(KeyError, match="bn.running_var"):
        Net().load_state_dict(state)
    state = net.state_dict()
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match="extra"):
        Net().load_state_dict(state)
    state = net.state_dict()
    state["conv.weight"] = np.zeros((1, 1, 1, 1))
    with pytest.raises(ValueError, match="conv.weight"):
        Net().load_state_dict(state)


def test_train_and_eval_switch_batch_norm():
    net = Net()
    x = mf.tensor(np.random.default_rng(1).random((4, 2, 6, 6)).astype(np.float32) * 3 + 2)
    net.train()
    net(x)
    moved = net.bn.running_mean.data.copy()
    assert np.abs(moved).sum() > 0
    net.eval()
    assert not net.bn.training
    net(x)
    np.testing.assert_array_equal(net.bn.running_mean.data, moved)


def test_zero_grad_and_to_cpu():
    net = Net()
    x = mf.tensor(np.random.default_rng(2).random((2, 2, 4, 4)).astype(np.float32))
    net(x).sum().backward()
    assert net.conv.weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.to("cpu") is net and net.device == "cpu"


def test_module_gradcheck_casts_parameters_and_restores_them():
    net = Net()
    report = mf.gradcheck(net, [np.random.default_rng(3).random((2, 2, 4, 4))], mode="directional")
    assert report.ok and net.conv.weight.dtype == np.float32


@pytest.mark.parametrize("make,message", [
    (lambda: nn.Conv2d(-1, 3, 3), "Conv2d: in_channels must be an integer >= 1, got -1"),
    (lambda: nn.Conv2d(3, 0, 3), "Conv2d: out_channels must be an integer >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4, 0), "Conv2d: kernel_size must be an integer >= 1, got 0"),
    (lambda: nn.Conv2d(3.0, 4, 3), "Conv2d: in_channels must be an integer >= 1, got 3.0"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), "Conv2d: stride must be an integer >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), "Conv2d: padding must be an integer >= 0, got -1"),
    (lambda: nn.BatchNorm2d(0), "BatchNorm2d: num_features must be an integer >= 1, got 0"),
    (lambda: nn.BatchNorm2d(4, eps=0.0), "BatchNorm2d: eps must be positive, got 0.0"),
    (lambda: nn.BatchNorm2d(4, momentum=1.5),
     r"BatchNorm2d: momentum must be in \[0, 1\], got 1.5"),
])
def test_layers_refuse_impossible_sizes_when_built(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layers_take_numpy_integers():
    conv = nn.Conv2d(np.int64(3), np.int32(4), np.int64(3))
    assert conv.weight.shape == (4, 3, 3, 3)


def test_a_layer_used_twice_has_its_parameters_counted_once():
    conv = nn.Conv2d(2, 2, 3, bias=True)
    twice = nn.Sequential(conv, conv)
    assert [name for name, _ in twice.named_parameters()] == ["0.weight", "0.bias"]
    assert twice.num_parameters() == conv.num_parameters() == 2 * 2 * 9 + 2


def test_assigning_to_a_buffer_keeps_it_a_buffer_and_to_a_parameter_needs_a_parameter():
    bn = nn.BatchNorm2d(3)
    bn.running_mean = np.full(3, 0.5, np.float32)  # an array: still the buffer, as a tensor
    assert "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], np.full(3, 0.5))
    bn.eval()
    bn(mf.tensor(np.random.default_rng(41).standard_normal((1, 3, 2, 2)).astype(np.float32)))
    conv = nn.Conv2d(2, 2, 1)
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight': assign an "
                                        "nn.Parameter"):
        conv.weight = mf.tensor(np.zeros((2, 2, 1, 1), np.float32))
    assert "weight" in dict(conv.named_parameters())


def test_load_state_dict_takes_tensors_too():
    conv = nn.Conv2d(2, 3, 1)
    state = {name: mf.tensor(value + 1) for name, value in conv.state_dict().items()}
    conv.load_state_dict(state)
    np.testing.assert_array_equal(conv.weight.data, state["weight"].data)


def test_a_buffer_assigned_an_array_keeps_its_dtype():
    bn = nn.BatchNorm2d(3)
    bn.running_var = np.full(3, 2.0)  # float64
    assert bn.running_var.dtype == np.float32
    with pytest.raises(ValueError, match=r"has shape \(2,\)"):
        bn.load_state_dict({**bn.state_dict(), "running_var": [1.0, 2.0]})


def test_a_slice_of_a_sequential_is_a_sequential_of_the_same_modules():
    first, second, third = nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU()
    model = nn.Sequential(first, second, third)
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [first, second]
    assert head[1] is model[1] is second and model[-1] is third
    assert head.parameters()[0] is second.weight
    x = mf.tensor(np.random.default_rng(13).standard_normal((1, 2, 3, 3)).astype(np.float32))
    np.testing.assert_array_equal(head(x).data, second(first(x)).data)


def test_a_sequential_refuses_what_is_not_a_module():
    import minifrrn.functional as F
    with pytest.raises(TypeError, match="Sequential: item 1 is a function, not a Module"):
        nn.Sequential(nn.Conv2d(3, 4, 3), F.relu)


def test_a_module_casts_only_to_the_ops_dtypes():
    with pytest.raises(TypeError, match="float32 or float64, got float16"):
        nn.Conv2d(2, 2, 1).astype(np.float16)


def test_a_state_that_cannot_be_loaded_whole_leaves_the_module_unchanged():
    net = Net()
    before = net.state_dict()
    rng = np.random.default_rng(4)
    state = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    state["body.1.weight"] = np.full(before["body.1.weight"].shape, 1e300)  # beyond float32
    with pytest.raises(ValueError, match=r"'body.1.weight' holds values beyond the range of float32"):
        net.load_state_dict(state)
    for name, value in net.state_dict().items():  # the entries before it were not copied either
        np.testing.assert_array_equal(value, before[name])
    state["body.1.weight"] = before["body.1.weight"] * (1 + 1j)
    with pytest.raises(TypeError, match="'body.1.weight' holds complex64 values"):
        net.load_state_dict(state)
    with pytest.raises(TypeError, match="takes a mapping of names to arrays"):
        net.load_state_dict([1, 2])
    with pytest.raises(KeyError) as missing:
        net.load_state_dict({})
    assert str(missing.value).startswith("state dict is missing 7 key(s)")  # no quotes around it


def test_load_state_dict_returns_the_missing_and_unexpected_keys():
    net = Net()
    state = net.state_dict()
    del state["bn.running_var"]
    state["extra"] = np.zeros(1)
    missing, unexpected = Net().load_state_dict(state, strict=False)
    assert missing == ["bn.running_var"] and unexpected == ["extra"]
    assert Net().load_state_dict(net.state_dict()) == ([], [])


def test_deleting_or_shadowing_registered_state():
    conv = nn.Conv2d(2, 3, 3, bias=True)
    del conv.bias
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    assert list(conv.state_dict()) == ["weight"]
    bn = nn.BatchNorm2d(3)
    with pytest.raises(KeyError, match="'weight' is already a parameter"):
        bn.register_buffer("weight", np.zeros(3, np.float32))
    bn.running_mean = nn.Parameter(np.ones(3, np.float32))  # becomes a parameter, as in PyTorch
    assert "running_mean" in dict(bn.named_parameters())
    assert "running_mean" not in dict(bn.named_buffers())


def test_a_shared_module_is_walked_once_and_a_cycle_ends():
    shared = nn.Conv2d(2, 2, 1)
    outer = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in outer.named_modules()] == ["", "0", "1"]
    outer.me = outer  # a module holding itself: the walk must end
    assert len(list(outer.named_modules())) == 3
    with pytest.raises(TypeError, match="mode must be True or False"):
        outer.train("no")


def test_reprs_show_stride_and_padding():
    assert repr(nn.Conv2d(3, 4, 3, stride=2)) == "Conv2d(3, 4, kernel_size=3, stride=2, padding=1)"
    assert repr(nn.MaxPool2d(3, 2)) == "MaxPool2d(3, stride=2)"


def test_batch_norm_given_pytorchs_argument_order_is_refused():
    bn = nn.BatchNorm2d(3)
    x = mf.tensor(np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32))
    with pytest.raises(TypeError, match="running_mean requires grad, so it looks like gamma"):
        mf.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, True)


def test_pooling_sizes_are_integers():
    x = mf.tensor(np.random.default_rng(6).standard_normal((1, 1, 6, 6)).astype(np.float32))
    with pytest.raises(TypeError, match="max_pool2d: kernel must be integers"):
        mf.functional.max_pool2d(x, (2.9, 2.9))
    with pytest.raises(TypeError, match="conv2d: stride must be integers"):
        mf.functional.conv2d(x, mf.tensor(np.ones((1, 1, 3, 3), np.float32)), stride=(1, True))


def test_an_in_place_update_of_a_parameter_keeps_its_place():
    # optimiser state is saved by position: a reordered module would get the wrong moments
    bn = nn.BatchNorm2d(3)
    replacement = nn.Conv2d(2, 2, 1)
    outer = nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU())
    with mf.no_grad():
        bn.weight *= 0.5
    bn.weight = nn.Parameter(np.ones(3, np.float32))
    setattr(outer, "0", replacement)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in outer.named_modules()] == ["", "0", "1"] and outer[0] is replacement
