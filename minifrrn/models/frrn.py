"""FRRN built from a stage spec, FRRN A and B (Pohlen et al., CVPR 2017), and a tiny FRRN for CPU training.

    y = CBR(5, stem)(x); y = RU(stem)(y) ×3
    z = CB(1, z_channels)(y)                               # the residual stream starts
    for (n, c, s) in encoder: y = maxpool2(y);      repeat n: y, z = FRRU(s, c)(y, z)
    for (n, c, s) in decoder: y = bilinear_up2(y);  repeat n: y, z = FRRU(s, c)(y, z)
    x = concat[bilinear_up2(y), z]
    x = RU(→ head, projection shortcut); x = RU(head) ×2
    logits = conv1×1(head → classes, with bias)            # log-softmax is in the loss
"""
from __future__ import annotations

from .. import functional as F
from ..autograd import is_whole_number, recompute, unwrap
from ..nn import Conv2d, Module, Sequential, init
from .units import CB, CBR, FRRU, ResidualUnit

__all__ = ["FRRN", "frrn_a", "frrn_b", "frrn_tiny", "FRRN_A_SPEC", "FRRN_B_SPEC", "FRRN_TINY_SPEC",
           "MODELS", "build_model"]

FRRN_A_SPEC = dict(encoder=[[3, 96, 2], [4, 192, 4], [2, 384, 8], [2, 384, 16]],
                   decoder=[[2, 192, 8], [2, 192, 4], [2, 96, 2]])
FRRN_B_SPEC = dict(encoder=[[3, 96, 2], [4, 192, 4], [2, 384, 8], [2, 384, 16], [2, 384, 32]],
                   decoder=[[2, 192, 16], [2, 192, 8], [2, 192, 4], [2, 96, 2]])
# Same structure, scaled down to train on two CPU cores in minutes.
FRRN_TINY_SPEC = dict(encoder=[[1, 24, 2], [1, 32, 4], [1, 48, 8]],
                      decoder=[[1, 32, 4], [1, 24, 2]],
                      stem_channels=16, z_channels=16, head_channels=16, stem_units=1, head_units=1)


class FRRN(Module):
    """A full-resolution residual network from a stage spec (see the module docstring).

    ``checkpoint=True`` recomputes every FRRU in backward instead of storing its activations
    (gradient checkpointing, as the authors did to fit FRRN B): less memory, one more forward.
    """

    def __init__(self, num_classes=19, encoder=FRRN_A_SPEC["encoder"],
                 decoder=FRRN_A_SPEC["decoder"], stem_channels=48, z_channels=32,
                 head_channels=48, stem_units=3, head_units=3, in_channels=3, checkpoint=False,
                 name="frrn"):
        super().__init__()
        if not is_whole_number(num_classes) or num_classes < 2:
            raise ValueError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
        if not encoder or not decoder:
            raise ValueError(f"{name}: encoder and decoder need at least one stage each, got "
                             f"{len(encoder)} and {len(decoder)}")
        if decoder[-1][2] != 2:
            raise ValueError("FRRN: the last decoder stage must work at scale 2 (the head upsamples "
                             f"by 2 to full resolution), got {decoder[-1]}")
        self.num_classes, self.in_channels, self.name = num_classes, in_channels, name
        self.encoder_spec = [list(s) for s in encoder]
        self.decoder_spec = [list(s) for s in decoder]
        self.checkpoint = checkpoint
        self.stem = Sequential(CBR(in_channels, stem_channels, 5),
                               *[ResidualUnit(stem_channels, stem_channels)
                                 for _ in range(stem_units)])
        self.to_residual_stream = CB(stem_channels, z_channels, 1)
        channels = stem_channels
        stages = []
        for n, c, s in self.encoder_spec + self.decoder_spec:
            units = []
            for _ in range(n):
                units.append(FRRU(s, c, channels, z_channels))
                channels = c
            stages.append(Sequential(*units))
        self.encoder = Sequential(*stages[:len(encoder)])
        self.decoder = Sequential(*stages[len(encoder):])
        self.head = Sequential(ResidualUnit(channels + z_channels, head_channels),
                               *[ResidualUnit(head_channels, head_channels)
                                 for _ in range(head_units - 1)])
        self.classifier = Conv2d(head_channels, num_classes, 1, bias=True)

    @property
    def factor(self) -> int:
        """Input height and width must be multiples of this (the deepest pooling)."""
        return max(s for _, _, s in self.encoder_spec + self.decoder_spec)

    def check_input(self, x):
        xd = unwrap(x)
        if xd.ndim != 4:
            raise ValueError(f"{self.name}: input must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
        if xd.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: input has {xd.shape[1]} channels, the model expects "
                             f"{self.in_channels} (RGB)")
        H, W = xd.shape[2:]
        f = self.factor
        if H % f or W % f:
            def near(v):
                if v < f:
                    return str(f)  # the smallest size that works
                low = v // f * f
                return f"{low} or {low + f}" if v % f else str(v)
            raise ValueError(f"{self.name}: input size {H}x{W} is not divisible by {f} (the model's "
                             f"deepest pooling): use height {near(H)} and width {near(W)}")
        if self.training:
            self.check_batch_norm_size(xd.shape[0], H, W, fix="a batch of 2 or more, larger "
                                                               "images, or model.eval() to predict")

    def check_batch_norm_size(self, batch, H, W, fix):
        """Batch norm in training mode normalises each channel over the batch and the map: at the
        deepest pooling, batch·(H/f)·(W/f) values, which must be two or more."""
        f = self.factor
        if batch * (H // f) * (W // f) < 2:
            raise ValueError(f"{self.name}: a batch of {batch} at {H}x{W} leaves one value per "
                             f"channel at the deepest pooling (1/{f}), where batch norm in training "
                             f"mode needs two: use {fix}")

    def _run_unit(self, unit, y, z):
        if self.checkpoint:
            return recompute(unit, y, z)
        return unit(y, z)

    def forward(self, x, return_streams=False):
        self.check_input(x)
        y = self.stem(x)
        z = self.to_residual_stream(y)
        streams = []
        for stage in self.encoder:
            y = F.max_pool2d(y, 2)
            for unit in stage:
                y, z = self._run_unit(unit, y, z)
                streams.append((y, z))
        for stage in self.decoder:
            y = F.upsample_bilinear2x(y)
            for unit in stage:
                y, z = self._run_unit(unit, y, z)
                streams.append((y, z))
        x = F.concat([F.upsample_bilinear2x(y), z], axis=1)
        logits = self.classifier(self.head(x))
        return (logits, streams) if return_streams else logits

    def summary(self, input_size=(256, 512)) -> str:
        """A table of the stages: both streams' shapes for ``input_size`` and parameter counts."""
        H, W = input_size
        f = self.factor
        if H % f or W % f:
            raise ValueError(f"{self.name}: input size {H}x{W} is not divisible by {f}")
        zc = self.to_residual_stream[0].out_channels
        rows = [("stage", "unit", "pooling stream y", "residual stream z", "parameters")]
        stem_c = self.stem[0][0].out_channels
        rows.append(("stem", "CBR5 + RU", f"{stem_c}x{H}x{W}", "", f"{self.stem.num_parameters():,}"))
        rows.append(("", "CB1 -> z", "", f"{zc}x{H}x{W}",
                     f"{self.to_residual_stream.num_parameters():,}"))
        for label, stages, specs in (("encoder", self.encoder, self.encoder_spec),
                                     ("decoder", self.decoder, self.decoder_spec)):
            for i, (stage, (n, c, s)) in enumerate(zip(stages, specs)):
                rows.append((f"{label} {i + 1}", f"{n} x FRRU({s}, {c})",
                             f"{c}x{H // s}x{W // s}", f"{zc}x{H}x{W}",
                             f"{stage.num_parameters():,}"))
        head_c = self.classifier.in_channels
        rows.append(("head", f"{len(self.head)} x RU", f"{head_c}x{H}x{W}", "",
                     f"{self.head.num_parameters():,}"))
        rows.append(("classifier", "conv1x1", f"{self.num_classes}x{H}x{W}", "",
                     f"{self.classifier.num_parameters():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"{self.name}: input 3x{H}x{W}"]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)))
        lines.append(f"trainable parameters: {self.num_parameters():,}   "
                     f"buffer values: {self.num_buffer_values():,}")
        return "\n".join(lines)


def _build(spec, num_classes, seed, name, **overrides):
    if seed is not None:
        init.manual_seed(seed)
    return FRRN(num_classes=num_classes, name=name, **{**spec, **overrides})


def frrn_a(num_classes=19, seed=None, **kwargs):
    """FRRN A (input sides divisible by 16; 17,746,803 parameters for 19 classes)."""
    return _build(FRRN_A_SPEC, num_classes, seed, "frrn_a", **kwargs)


def frrn_b(num_classes=19, seed=None, **kwargs):
    """FRRN B (input sides divisible by 32; 24,755,699 parameters for 19 classes)."""
    return _build(FRRN_B_SPEC, num_classes, seed, "frrn_b", **kwargs)


def frrn_tiny(num_classes=19, seed=None, **kwargs):
    """A small FRRN with the same structure (two streams, FRRUs, bilinear between stages), for
    training on a CPU in minutes (input sides divisible by 8)."""
    return _build(FRRN_TINY_SPEC, num_classes, seed, "frrn_tiny", **kwargs)


MODELS = {"tiny": frrn_tiny, "frrn_tiny": frrn_tiny, "frrn_a": frrn_a, "frrn_b": frrn_b}


def build_model(name, num_classes=19, seed=None, **kwargs):
    """Build a model by name: ``tiny`` (or ``frrn_tiny``), ``frrn_a``, ``frrn_b``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of tiny, frrn_a, frrn_b")
    return MODELS[name](num_classes=num_classes, seed=seed, **kwargs)
