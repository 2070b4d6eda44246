"""Finite-difference gradient checking, the way that makes it trustworthy.

``gradcheck(fn, inputs)`` compares the gradients autograd computes with central differences:

* everything is cast to **float64** by the checker itself: the inputs, and the parameters and buffers of
  ``fn`` when ``fn`` is a module (anything with ``parameters()``), restored afterwards. In float32 a
  central difference with eps = 1e-4 has a relative error near 1, which hides real bugs.
* the scalar that is differentiated is ``φ = Σ_k <out_k, g_k>`` with a **random** upstream gradient
  ``g_k`` for every output. A ``sum()`` (all-ones upstream gradient) would let a backward that ignores
  or transposes its upstream gradient pass.
* ``mode="elementwise"``: one central difference ``(φ(x + ε e_i) − φ(x − ε e_i)) / 2ε`` per element
  of every checked tensor. ``mode="directional"``: one random unit direction ``d`` over *all* checked
  tensors at once, compared with ``Σ <∇φ, d>``: a single check for a whole FRRU or a small network.
* buffers (batch-norm running statistics) are snapshotted and restored around every evaluation, so a
  training-mode forward cannot drift between the perturbed evaluations.

A failure raises ``GradcheckError`` whose message names the worst element: which tensor, its index, the
analytic and numeric values and the relative error.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autograd import Tensor, no_grad
from .backend import as_numpy, get_array_module

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport"]


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message names the worst element."""

    def __init__(self, report):
        super().__init__(report.summary())
        self.report = report


@dataclass
class GradcheckReport:
    """The outcome of a check: ``ok``, and the worst element found."""

    ok: bool
    mode: str
    checked: int = 0                  # number of compared values
    worst_tensor: str = ""
    worst_index: tuple = ()
    analytic: float = 0.0
    numeric: float = 0.0
    rel_error: float = 0.0
    abs_error: float = 0.0
    details: list = field(default_factory=list)

    def summary(self) -> str:
        status = "passed" if self.ok else "FAILED"
        where = (f" at {self.worst_tensor}[{', '.join(map(str, self.worst_index))}]"
                 if self.mode == "elementwise" else f" along a random direction ({self.worst_tensor})")
        return (f"gradcheck {status} ({self.mode}, {self.checked} values): worst{where}: "
                f"analytic {self.analytic:.10g}, numeric {self.numeric:.10g}, "
                f"relative error {self.rel_error:.3g}")


def _module_tensors(fn):
    params, buffers = [], []
    if hasattr(fn, "named_parameters"):
        params = [(name, p) for name, p in fn.named_parameters()]
    elif hasattr(fn, "parameters"):
        params = [(f"param{i}", p) for i, p in enumerate(fn.parameters())]
    if hasattr(fn, "named_buffers"):
        buffers = [(name, b) for name, b in fn.named_buffers()]
    elif hasattr(fn, "buffers"):
        buffers = [(f"buffer{i}", b) for i, b in enumerate(fn.buffers())]
    return params, buffers


def gradcheck(fn, inputs, params=(), *, mode: str = "elementwise", eps: float = 1e-6,
              atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0, check_inputs=None,
              raise_on_failure: bool = True) -> GradcheckReport:
    """Check ``fn``'s autograd gradients against central finite differences in float64.

    Args:
        fn: callable taking one ``Tensor`` per entry of ``inputs`` and returning a ``Tensor`` or a tuple
            of ``Tensor``. A module's parameters and buffers are found and cast automatically.
        inputs: arrays or tensors. Floating-point ones are cast to float64 and checked; integer ones
            (labels) are passed through unchanged.
        params: extra tensors that ``fn`` uses (e.g. weights of a functional call), cast and checked.
        mode: ``"elementwise"`` or ``"directional"``.
        eps, atol, rtol: step and tolerances; an element passes when
            ``|analytic − numeric| <= atol + rtol · max(|analytic|, |numeric|)``.
        seed: seeds the random upstream gradients and the direction.
        check_inputs: optional list of booleans choosing which float inputs to check.
    Returns:
        a ``GradcheckReport``; raises ``GradcheckError`` instead when it fails and
        ``raise_on_failure`` is true.
    """
    if mode not in ("elementwise", "directional"):
        raise ValueError(f"gradcheck: mode must be 'elementwise' or 'directional', got {mode!r}")
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"gradcheck: inputs must be a list with one array or tensor per argument "
                        f"of fn, got a {type(inputs).__name__}: pass [x]")
    rng = np.random.default_rng(seed)

    # --- cast everything to float64 ------------------------------------------------------------------
    input_tensors, checked = [], []
    for i, x in enumerate(inputs):
        data = x.data if isinstance(x, Tensor) else x
        xp = get_array_module(data)
        data = xp.asarray(data)
        is_float = data.dtype.kind == "f"
        want = is_float and (check_inputs is None or check_inputs[i])
        t = Tensor(data.astype(np.float64) if is_float else data, requires_grad=want)
        input_tensors.append(t)
        if want:
            checked.append((f"input{i}", t))
    module_params, module_buffers = _module_tensors(fn)
    # each tensor once: a parameter of fn's module listed again in params (or twice there) would
    # be perturbed along two directions and its gradient counted twice
    seen = {id(p) for _, p in module_params}
    extra = []
    for i, p in enumerate(params):
        if id(p) not in seen:
            seen.add(id(p))
            extra.append((f"param{i}", p))
    originals = [(p, p.data, p.requires_grad) for _, p in module_params + extra]
    buffer_originals = [(b, b.data) for _, b in module_buffers]
    try:
        for name, p in module_params + extra:
            p.data = p.data.astype(np.float64)
            p._node.dtype = p.data.dtype
            p.zero_grad()
            p.requires_grad = True
            checked.append((name, p))
        for _, b in module_buffers:
            if b.data.dtype.kind == "f":
                b.data = b.data.astype(np.float64)
                b._node.dtype = b.data.dtype
        frozen = [(b, b.data.copy()) for _, b in module_buffers]

        def restore_buffers():
            for b, snapshot in frozen:
                b.data[...] = snapshot

        def as_outputs(result):
            outs = result if isinstance(result, tuple) else (result,)
            return [o for o in outs if isinstance(o, Tensor)]

        if not checked:
            raise ValueError("gradcheck: nothing to check: no floating-point input or parameter "
                             "(integer inputs are passed through as labels)")

        # --- analytic: backward of φ = Σ_k <out_k, g_k> ---------------------------------------------
        result = fn(*input_tensors)
        outputs = as_outputs(result)
        if not outputs:
            # an array computed from x.data has no graph: a check of it would pass on nothing
            raise TypeError(f"gradcheck: fn returned a {type(result).__name__}, not a Tensor (or a "
                            f"tuple holding Tensors): build the output with minifrrn ops")
        restore_buffers()
        upstream = []
        for out in outputs:
            xp = get_array_module(out.data)
            upstream.append(xp.asarray(rng.standard_normal(out.shape)).astype(out.dtype))
        for out, g in zip(outputs, upstream):
            if out.requires_grad:
                out.backward(g)
        analytic = []
        for name, t in checked:
            g = t.grad
            analytic.append(np.zeros(t.shape) if g is None else as_numpy(g).astype(np.float64))
        del outputs

        def phi():
            with no_grad():
                outs = as_outputs(fn(*input_tensors))
            restore_buffers()
            return float(sum(float((as_numpy(o.data).astype(np.float64) * as_numpy(g)).sum())
                             for o, g in zip(outs, upstream)))

        report = GradcheckReport(ok=True, mode=mode)
        if mode == "elementwise":
            worst = None
            for (name, t), a in zip(checked, analytic):
                # index the array itself (not a reshaped copy) so that perturbations reach fn,
                # whatever the memory layout of the input
                for k, idx in enumerate(np.ndindex(*t.shape)):
                    saved = t.data[idx].item()
                    t.data[idx] = saved + eps
                    plus = phi()
                    t.data[idx] = saved - eps
                    minus = phi()
                    t.data[idx] = saved
                    numeric = (plus - minus) / (2 * eps)
                    analytic_k = float(a[idx])
                    err = abs(analytic_k - numeric)
                    rel = err / max(abs(analytic_k), abs(numeric), 1e-12)
                    bad = err > atol + rtol * max(abs(analytic_k), abs(numeric))
                    report.checked += 1
                    score = (bad, rel if bad else err)
                    if worst is None or score > worst[0]:
                        worst = (score, name, idx, analytic_k, numeric, rel,
                                 err)
                    if bad:
                        report.ok = False
            if worst is not None:
                (_, report.worst_tensor, idx, report.analytic, report.numeric, report.rel_error,
                 report.abs_error) = worst
                report.worst_index = tuple(int(i) for i in idx)
        else:
            directions = []
            for _, t in checked:
                xp = get_array_module(t.data)
                directions.append(xp.asarray(rng.standard_normal(t.shape)))
            norm = np.sqrt(sum(float((as_numpy(d) ** 2).sum()) for d in directions)) or 1.0
            directions = [d / norm for d in directions]
            saved = [t.data.copy() for _, t in checked]
            for (_, t), d, s in zip(checked, directions, saved):
                t.data[...] = s + eps * d
            plus = phi()
            for (_, t), d, s in zip(checked, directions, saved):
                t.data[...] = s - eps * d
            minus = phi()
            for (_, t), s in zip(checked, saved):
                t.data[...] = s
            numeric = (plus - minus) / (2 * eps)
            analytic_dot = float(sum((a * as_numpy(d)).sum() for a, d in zip(analytic, directions)))
            err = abs(analytic_dot - numeric)
            report.checked = 1
            report.worst_tensor = f"{len(checked)} tensors"
            report.analytic, report.numeric, report.abs_error = analytic_dot, numeric, err
            report.rel_error = err / max(abs(analytic_dot), abs(numeric), 1e-12)
            report.ok = err <= atol + rtol * max(abs(analytic_dot), abs(numeric))
    finally:
        for p, data, requires in originals:
            p.data = data
            p._node.dtype = data.dtype
            p.zero_grad()
            p.requires_grad = requires
        for b, data in buffer_originals:
            b.data = data
            b._node.dtype = data.dtype
    if not report.ok and raise_on_failure:
        raise GradcheckError(report)
    return report
