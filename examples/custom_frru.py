"""A custom FRRU and a small FRRN-like network built from minifrrn's building blocks.

The experiment: give the pooling stream of an FRRU its own identity path. The library's FRRU computes
``y' = CBR(3,c)(CBR(3,c)(concat[y, maxpool(z)]))``; the variant below mixes the concatenation down
to ``c`` channels with a 1x1 CBR and then applies a residual unit, ``y' = RU(c)(CBR(1,c)(t))``. The
residual stream is untouched, so the unit still satisfies FRRN's two equations

    z_n = z_{n-1} + H(y_{n-1}, z_{n-1})        y_n = G(y_{n-1}, z_{n-1})

and it can be mixed freely with the library's ``FRRU`` in one network, as ``TwoStreamNet`` does.

The script builds the network, runs a forward and a backward pass with FRRN's bootstrapped loss,
prints the shapes of both streams and the parameter counts, and then checks the hand-assembled
network's gradients with ``minifrrn.gradcheck`` (directional mode, float64, tiny size): a custom
unit is only trustworthy once its gradient has been checked. A failing check raises
``GradcheckError``.

    python examples/custom_frru.py                       # 64x128 input, 16-channel base width
    python examples/custom_frru.py --height 128 --width 256 --channels 32
"""
from __future__ import annotations

import argparse

import numpy as np

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.backend import GPUUnavailableError, check_device, to_device
from minifrrn.models import CB, CBR, FRRU, ResidualUnit
from minifrrn.nn import Conv2d, Module, init


class ResidualPoolingFRRU(Module):
    """FRRU(s, c) whose pooling stream has an identity path of its own::

        p  = maxpool_{s×s}(z)                           pooled from full resolution, as in FRRU
        t  = concat[y, p]
        y' = RU(c)(CBR(1, c)(t))                        = G(y, z)
        z' = z + nearest_upsample_s(conv1×1(y' → z))    = z + H(y, z), as in FRRU
    """

    def __init__(self, scale, channels, y_channels_in, z_channels):
        super().__init__()
        self.scale = scale
        self.mix = CBR(y_channels_in + z_channels, channels, 1)
        self.refine = ResidualUnit(channels, channels)
        # with a bias and no BN or ReLU, like the library's FRRU: the residual can be any sign
        self.to_residual = Conv2d(channels, z_channels, 1, bias=True)

    def forward(self, y, z):
        pooled = F.max_pool2d(z, self.scale)
        y_next = self.refine(self.mix(F.concat([y, pooled], axis=1)))
        z_next = z + F.upsample_nearest2d(self.to_residual(y_next), self.scale)
        return y_next, z_next


class TwoStreamNet(Module):
    """A three-unit FRRN: a library FRRU at 1/2, the custom unit at 1/4 and again at 1/2 on the way
    up, then a 1×1 classifier on [upsampled y, z]. Input sides must be multiples of 4."""

    def __init__(self, num_classes=19, channels=16, z_channels=8):
        super().__init__()
        c1, c2 = channels, 2 * channels
        self.stem = CBR(3, c1, 3)
        self.to_residual_stream = CB(c1, z_channels, 1)
        self.down1 = FRRU(2, c1, c1, z_channels)
        self.down2 = ResidualPoolingFRRU(4, c2, c1, z_channels)
        self.up1 = ResidualPoolingFRRU(2, c1, c2, z_channels)
        self.classifier = Conv2d(c1 + z_channels, num_classes, 1, bias=True)

    def forward(self, x, streams=None):
        """Logits (N, classes, H, W); appends (name, y, z) after every unit to ``streams``."""
        def record(name, y, z):
            if streams is not None:
                streams.append((name, y, z))
            return y, z

        y = self.stem(x)
        z = self.to_residual_stream(y)
        y, z = record("down1", *self.down1(F.max_pool2d(y, 2), z))
        y, z = record("down2", *self.down2(F.max_pool2d(y, 2), z))
        y, z = record("up1", *self.up1(F.upsample_bilinear2x(y), z))
        return self.classifier(F.concat([F.upsample_bilinear2x(y), z], axis=1))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="custom_frru.py",
        description="Build a custom FRRU into a small FRRN, run it and check its gradients.")
    parser.add_argument("--height", type=int, default=64, help="input height (multiple of 4)")
    parser.add_argument("--width", type=int, default=128, help="input width (multiple of 4)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--channels", type=int, default=16, help="pooling-stream base width")
    parser.add_argument("--z-channels", type=int, default=8, help="residual-stream width")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--device", default="cpu", help="cpu (default) or gpu, for the forward "
                                                        "and backward; the gradcheck runs on cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_arguments(args):
    for name in ("height", "width"):
        value = getattr(args, name)
        if value < 4 or value % 4:
            raise ValueError(f"--{name} must be a positive multiple of 4 (two poolings), got {value}")
    for name in ("batch_size", "channels", "z_channels"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.classes < 2:
        raise ValueError(f"--classes must be >= 2, got {args.classes}")
    # batch norm in training mode needs two values per channel; the deepest map is 1/4 of the input
    deepest = args.batch_size * (args.height // 4) * (args.width // 4)
    if deepest < 2:
        raise ValueError(f"a batch of {args.batch_size} at {args.height}x{args.width} leaves one "
                         f"value per channel at 1/4 for batch norm: use --batch-size 2 or an input "
                         f"of at least 4x8")
    check_device(args.device)


def forward_backward(args):
    """One training step's forward and backward at the requested size; returns the model."""
    init.manual_seed(args.seed)  # the layers draw their initial weights from this generator
    model = TwoStreamNet(args.classes, args.channels, args.z_channels).to(args.device)
    rng = np.random.default_rng(args.seed)
    N, H, W = args.batch_size, args.height, args.width
    images = rng.random((N, 3, H, W), dtype=np.float32)
    target = rng.integers(0, args.classes, (N, H, W))
    x = mf.tensor(images, device=args.device)

    streams = []
    logits = model(x, streams=streams)
    loss = F.bootstrapped_cross_entropy(logits, to_device(target, args.device))
    loss.backward()

    print(f"input {tuple(x.shape)} -> logits {tuple(logits.shape)}, loss {loss.item():.4f}")
    for name, y, z in streams:
        print(f"  after {name:<6} y {str(tuple(y.shape)):<20} z {tuple(z.shape)}")
    for name in ("stem", "to_residual_stream", "down1", "down2", "up1", "classifier"):
        print(f"  {name:<20} {getattr(model, name).num_parameters():>8,} parameters")
    print(f"  {'total':<20} {model.num_parameters():>8,} parameters")
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    if missing:
        raise RuntimeError(f"no gradient reached {len(missing)} parameters, first {missing[0]}")
    return model


def check_gradients(seed):
    """Directional finite differences over every input and parameter of a narrow copy of the net,
    in training mode (batch statistics), for two random directions. Raises GradcheckError."""
    init.manual_seed(seed)
    model = TwoStreamNet(num_classes=3, channels=3, z_channels=2).train()
    # gradcheck casts the input, parameters and buffers to float64 itself and restores them after
    x = np.random.default_rng(seed).random((2, 3, 8, 8))
    for direction_seed in (0, 1):
        report = mf.gradcheck(model, [x], mode="directional", seed=direction_seed)
        print(report.summary())


def main(argv=None):
    """Build, run and check the custom network; returns the model of the forward/backward run."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
    except (ValueError, GPUUnavailableError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    model = forward_backward(args)
    check_gradients(args.seed)
    return model


if __name__ == "__main__":
    main()
