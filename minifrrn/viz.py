"""Pictures: label colours, overlays, prediction grids and training curves (matplotlib, no window)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import as_numpy
from .data.labels import CLASS_NAMES, PALETTE
from .data.predictions import as_rgb, colorize, overlay  # noqa: F401 (overlay: re-exported)
from .files import write_atomically

__all__ = ["colorize", "overlay", "save_prediction_grid", "plot_curves"]


def _figure(**kwargs):
    # a Figure of its own, drawn by the Agg canvas: no window, and the backend of an interactive
    # session (a notebook's inline plots) is left as it is
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def _save(fig, path):
    """Write the figure whole or not at all, in the format its file name's extension names (a
    name without one gets .png): a run killed while drawing leaves the previous picture, not
    half of one."""
    path = Path(path)
    if not path.suffix:  # as matplotlib names a file without one
        path = path.with_name(path.name + ".png")
    image_format = path.suffix[1:].lower()
    write_atomically(path, lambda handle: fig.savefig(handle, dpi=90, format=image_format))


def save_prediction_grid(path, images, targets, predictions, titles=None):
    """Rows of image | ground truth | prediction, with a legend of the classes present."""
    from matplotlib.patches import Patch
    n = len(images)
    titled = titles is not None and len(titles) > 0
    if n == 0 or len(targets) != n or len(predictions) != n or (titled and len(titles) != n):
        raise ValueError(f"save_prediction_grid: one target and one prediction (and title) per "
                         f"image, at least one image; got {n} images, {len(targets)} targets, "
                         f"{len(predictions)} predictions")
    fig = _figure(figsize=(12, 2.3 * n + 0.8))
    axes = fig.subplots(n, 3, squeeze=False)
    present = set()
    for i in range(n):
        t, p = as_numpy(targets[i]), as_numpy(predictions[i])
        present |= set(np.unique(t[t < 19]).tolist()) | set(np.unique(p[p < 19]).tolist())
        for ax, picture, title in zip(axes[i], (as_rgb(images[i]), colorize(t), colorize(p)),
                                      ("image", "ground truth", "prediction")):
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
        if titled:
            axes[i, 0].text(2, 10, titles[i], color="white", fontsize=8,
                            bbox=dict(facecolor="black", alpha=0.5, pad=1))
    handles = [Patch(color=PALETTE[c] / 255.0, label=CLASS_NAMES[c]) for c in sorted(present)]
    handles.append(Patch(color="black", label="void (not scored)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path)


def plot_curves(path, steps, losses, val_steps=None, val_ious=None):
    """Training loss (and validation mIoU on a second axis) against the step."""
    fig = _figure(figsize=(7, 4))
    ax = fig.subplots()
    # markers on short runs: a run of one step has one point, which a line alone does not draw
    ax.plot(steps, losses, color="tab:blue", lw=1, marker="." if len(steps) < 50 else None,
            label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    if val_steps is not None and len(val_steps):
        ax2 = ax.twinx()
        ax2.plot(val_steps, val_ious, "o-", color="tab:orange", label="validation mIoU")
        ax2.set_ylabel("mIoU", color="tab:orange")
        ax2.set_ylim(0, 1)
    ax.set_title("training curves")
    fig.tight_layout()
    _save(fig, path)
