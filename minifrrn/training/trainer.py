"""The training loop: progress, validation, atomic checkpoints, and resuming.

The state of a run is exactly (model weights and buffers, optimiser moments, schedule, step): the data
order and every augmentation are pure functions of (seed, epoch, index), so a run interrupted and
resumed from its last checkpoint reaches the same weights as one that never stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import functional as F
from ..autograd import check_positive_number, is_whole_number, no_grad, tensor, unwrap
from ..backend import as_numpy, check_device, get_array_module, to_device
from ..data import Cityscapes, DataLoader, ensure_synthetic
from ..data.augment import check_seed
from ..data.cityscapes import (find_frames, read_image, read_instance_ids, read_label_ids,
                               require_instance_files)
from ..data.labels import TRAIN2ID
from ..metrics import CityscapesEvaluator, ConfusionMatrix
from ..models import MODELS, build_model
from ..optim import Adam, CosineLR, PolyLR, StepLR
from ..files import atomic_write_text, disk_error, remove_stale_temporaries
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "Trainer", "train", "TrainingDiverged", "resize_scores", "predict_scores",
           "evaluate_model", "evaluate_checkpoint", "load_model", "run_config", "RUN_SETTINGS"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    data: str = "synthetic"
    model: str = "tiny"
    device: str = "cpu"
    steps: int = 480
    batch_size: int = 8
    lr: float = 2e-3
    schedule: str = "cosine"          # cosine | poly | step (the paper: x0.1 after 45,000) | none
    milestone: int = 45_000
    out: str | None = None
    resume: bool = False
    val_every: int = 120
    val_frames: int | None = None     # validate on the first N val frames (None: all)
    seed: int = 0
    downsample: int = 2
    max_shift: int | None = None      # translation augmentation, pixels at network resolution
    loss: str = "bootstrapped"
    num_workers: int = 2
    cache_mb: int = 256               # decoded, downsampled frames kept in memory, per split
    checkpointing: bool = False       # gradient checkpointing of every FRRU
    final_eval: bool = True
    quiet: bool = False

    def validate(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of tiny, frrn_a, frrn_b")
        check_device(self.device)
        for name in ("steps", "batch_size", "val_every", "downsample", "milestone", "val_frames",
                     "max_shift", "num_workers", "cache_mb", "seed"):
            value = getattr(self, name)
            if value is None and name in ("val_frames", "max_shift"):
                continue
            if not is_whole_number(value):
                raise TypeError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}")
            setattr(self, name, int(value))  # a NumPy integer would not go into config.json
        for name in ("steps", "batch_size", "val_every", "downsample", "milestone"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.val_frames is not None and self.val_frames < 1:
            raise ValueError(f"--val-frames must be >= 1 (or left out for every val frame), got "
                             f"{self.val_frames}")
        for name in ("max_shift", "num_workers", "cache_mb", "seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        check_seed(self.seed, "--seed")
        check_positive_number(self.lr, "--lr")
        self.lr = float(self.lr)
        if self.loss not in ("bootstrapped", "ce"):
            raise ValueError(f"--loss must be 'bootstrapped' or 'ce', got {self.loss!r}")
        if self.schedule not in ("cosine", "poly", "step", "none"):
            raise ValueError(f"--schedule must be cosine, poly, step or none, got {self.schedule!r}")
        if self.data != "synthetic" and not Path(self.data).is_dir():
            raise FileNotFoundError(f"dataset folder {self.data} does not exist: pass --data PATH to "
                                    f"a Cityscapes root (with leftImg8bit/ and gtFine/) or "
                                    f"--data synthetic")


def resize_scores(scores, H, W):
    """Bilinear resize of class scores (N, K, h, w) to (N, K, H, W) (half-pixel centres), on the
    scores' device; used to bring predictions to the ground truth's resolution before the argmax."""
    xp = get_array_module(scores)
    N, K, h, w = scores.shape
    if (h, w) == (H, W):
        return scores

    def weights(out_size, in_size):
        pos = (xp.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
        pos = xp.clip(pos, 0, in_size - 1)
        lo = xp.floor(pos).astype(np.int64)
        hi = xp.minimum(lo + 1, in_size - 1)
        frac = (pos - lo).astype(scores.dtype)
        return lo, hi, frac

    ylo, yhi, fy = weights(H, h)
    xlo, xhi, fx = weights(W, w)
    rows = scores[:, :, ylo] * (1 - fy)[:, None] + scores[:, :, yhi] * fy[:, None]
    return rows[..., xlo] * (1 - fx) + rows[..., xhi] * fx


def predict_scores(model, images, device="cpu"):
    """Class scores (N, K, H, W) of a batch of images (N, 3, H, W) float32 in [0, 1], by a model in
    eval mode (in training mode batch norm would use the batch's statistics, and move its running
    ones)."""
    if getattr(model, "training", False):
        raise ValueError("predict_scores: the model is in training mode, where batch norm uses the "
                         "batch's own statistics and updates its running ones: call model.eval()")
    images = unwrap(images)
    if images.dtype.kind != "f":
        raise TypeError(f"predict_scores: images must be floats in [0, 1], got {images.dtype}: "
                        f"divide 8-bit images by 255")
    # in the model's own float type: a float64 model (for checks) takes float64 images
    params = model.parameters() if hasattr(model, "parameters") else []
    dtype = params[0].dtype if params else np.float32
    with no_grad():
        x = tensor(to_device(images.astype(dtype, copy=False), device))
        return model(x).data


def _check_batch_size(batch_size):
    if not is_whole_number(batch_size) or batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {batch_size!r}")


def evaluate_model(model, dataset, device="cpu", limit=None, batch_size=1):
    """The four official scores: predictions upsampled (bilinear on scores, then argmax) to the
    ground truth's full resolution, mapped to label ids, scored against the original PNGs."""
    _check_batch_size(batch_size)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 frame (or None for all), got {limit}")
    was_training = model.training
    model.eval()
    evaluator = CityscapesEvaluator()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, count, batch_size):
        indices = range(start, min(start + batch_size, count))
        samples = [dataset.load(i) for i in indices]
        scores = predict_scores(model, np.stack([s["image"] for s in samples]), device)
        for i, row in zip(indices, scores):
            frame = dataset.frames[i]
            gt = read_label_ids(frame.label_path)
            inst = read_instance_ids(frame.instance_path) if frame.instance_path.exists() else None
            full = resize_scores(row[None], *gt.shape)
            train_ids = as_numpy(full.argmax(axis=1)[0])
            evaluator.add(TRAIN2ID[train_ids], gt, inst, name=frame.name)
    model.train(was_training)  # as it came: a model given in eval mode stays in it
    return evaluator.results()


def load_model(checkpoint, device="cpu", model=None):
    """The model stored in a checkpoint, in eval mode on ``device``; returns (model, meta).

    A checkpoint names its model (``tiny``, ``frrn_a``, ``frrn_b``), which is rebuilt here. For a
    model built by hand (an ``FRRN`` of another spec, any ``Module``), pass it as ``model``: the
    checkpoint's weights are loaded into it, and must fit it."""
    model_state, _, meta = load_checkpoint(checkpoint)
    name = meta.get("model")
    if model is None:
        if name not in MODELS:
            raise CheckpointError(f"checkpoint {checkpoint} names the model {name!r}, which is not "
                                  f"one of tiny, frrn_a, frrn_b: build it and pass it as "
                                  f"load_model(..., model=...)")
        model = build_model(name, num_classes=meta.get("num_classes", 19))
        # in the checkpoint's float type: a float64 model saved for checks stays float64
        dtypes = {np.asarray(v).dtype for v in model_state.values() if np.asarray(v).dtype.kind == "f"}
        if dtypes == {np.dtype(np.float64)}:
            model.astype(np.float64)
    else:
        name = type(model).__name__
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit model {name}: {error}") from None
    return model.to(device).eval(), meta


def evaluate_checkpoint(checkpoint, data, split="val", device="cpu", batch_size=1):
    """``minifrrn eval --checkpoint``: the four official scores of a checkpoint on a split."""
    check_device(device)
    _check_batch_size(batch_size)
    root = ensure_synthetic() if data == "synthetic" else data
    require_instance_files(find_frames(root, split))  # before the model is loaded
    model, meta = load_model(checkpoint, device)
    dataset = Cityscapes(root, split, downsample=meta.get("config", {}).get("downsample", 1),
                         for_training=False)
    return evaluate_model(model, dataset, device, batch_size=batch_size)


def _default_out(config):
    """runs/<time>-<model>, made here; a second run started in the same second gets -2, -3, ..."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}"
    Path("runs").mkdir(exist_ok=True)
    for n in range(1, 1000):
        folder = Path("runs") / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()  # exclusive: two processes never get the same folder
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"runs/{stamp}: too many runs started in one second")


# what defines a run: resuming must keep these. The device, loader threads, cache size, gradient
# checkpointing (memory for time, the same results up to rounding), printing and the final
# evaluation may change between the stop and the resume of a run, and so may ``steps``, to train
# longer (a cosine or poly schedule is then the curve of the new length, taken up at the current
# step: the rate jumps)
RUN_SETTINGS = ("data", "model", "batch_size", "lr", "schedule", "milestone", "val_every",
                "val_frames", "seed", "downsample", "max_shift", "loss")
RUN_FILES = ("last.npz", "log.jsonl", "config.json")  # what makes a folder a run's
TEXT_FILES = ("log.jsonl", "config.json", "results.json")  # written whole by atomic_write_text
FIGURES = ("curves.png", "predictions.png")  # written whole too, at the end of every run
# what a full disk while writing the log or a figure leaves, and what to do ({fix}: disk_error's)
KEPT_ON_DISK_ERROR = "the run's checkpoints are unchanged: {fix}, then continue with --resume"


def _resume_folder(out):
    """The run folder ``--resume`` continues: ``out``, or the newest run under runs/."""
    if out is not None:
        return Path(out)
    latest = _latest_run()
    if latest is None:
        raise FileNotFoundError("--resume found no run under runs/: pass --out DIR of the run to "
                                "resume")
    return latest


def run_config(out=None, **changes) -> TrainConfig:
    """The TrainConfig a run was started with, read from ``out``/last.npz (``out`` None: the newest
    run under runs/), set to resume it, with ``changes`` applied: ``minifrrn train --resume`` takes
    every setting it is not given from here. A run that stopped before its first checkpoint is
    read from its config.json instead: resuming it starts it again from step 0."""
    folder = _resume_folder(out)
    path = _last_checkpoint(folder)
    if path is None:
        saved = _saved_config(folder)
    else:
        # the settings alone: the trainer reads the rest
        saved = load_checkpoint(path, arrays=False)[2].get("config") or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    # a whole number a run started from Python stored as a float (120.0) is the count it meant
    settings = {key: int(value) if isinstance(value, float) and value.is_integer() and key != "lr"
                else value for key, value in saved.items() if key in known}
    return TrainConfig(**{**settings, "out": str(folder), "resume": True, **changes})


def _latest_run(parent=Path("runs")):
    """The run folder under ``parent`` written to last (its checkpoint, log or config.json): the
    run a bare ``--resume`` means, even one that stopped before its first checkpoint, which
    ``_last_checkpoint`` then names rather than resuming an older run instead."""
    def written(folder):
        return max((folder / name).stat().st_mtime for name in RUN_FILES
                   if (folder / name).exists())

    runs = [p for p in parent.glob("*") if any((p / name).exists() for name in RUN_FILES)]
    return max(runs, key=written) if runs else None


def _last_checkpoint(folder):
    """``folder``/last.npz; None for a run that stopped before its first checkpoint (a log or a
    config.json, no checkpoint), which resuming starts again; otherwise an error that says why
    there is nothing to resume and what to do."""
    folder = Path(folder)
    path = folder / "last.npz"
    if path.exists():
        return path
    if (folder / "best.npz").exists():
        raise FileNotFoundError(f"--resume: {_best_without_last(folder)}")
    if (folder / "log.jsonl").exists() or (folder / "config.json").exists():
        return None
    raise FileNotFoundError(f"--resume: {path} does not exist")


def _saved_config(folder):
    """The settings in ``folder``/config.json, of a run that stopped before its first checkpoint."""
    path = Path(folder) / "config.json"
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict) or "model" not in saved:
            raise ValueError("no settings")
    except (OSError, ValueError):
        raise FileNotFoundError(f"--resume: the run in {folder} stopped before its first "
                                f"checkpoint and {path.name} does not hold its settings: start a "
                                f"new run with the settings you want (another --out)") from None
    return saved


def _held(folder, name):
    unsaved = "" if name.endswith(".npz") else (
        " (it has no checkpoint yet: --resume starts it again from step 0; if it is not running, "
        "removing the folder frees it)")
    return FileExistsError(f"{folder} already holds a run ({name}): continue it with --resume, or "
                           f"choose another --out{unsaved}")


def _best_without_last(folder):
    """What to do with a run folder that holds best.npz but no last.npz, which nothing resumes:
    a run whose first save stopped between the two files (best.npz is written first)."""
    return (f"{folder} holds best.npz but no last.npz to resume from (the run's first save was "
            f"cut short): move best.npz away and resume, which starts the run again from step 0 "
            f"with its settings, or choose another --out")


class Trainer:
    """One training run; ``run()`` trains to ``config.steps`` and returns a summary dict."""

    def __init__(self, config: TrainConfig):
        config.validate()
        self.config = config
        if config.resume:
            config.out = str(_resume_folder(config.out))
        if config.data != "synthetic":  # absolute, so that the run resumes from any folder
            config.data = str(Path(config.data).resolve())
        made = False  # whether this run made its folder: then a failed setup removes it again
        if config.resume:
            self.out = Path(config.out)
            self._saved = self._load_resumable()  # checked against config before any work
        else:
            made = not config.out or not Path(config.out).exists()
            self.out = Path(config.out) if config.out else _default_out(config)
            held = [name for name in ("last.npz", "best.npz", *TEXT_FILES)
                    if (self.out / name).exists()]
            if held:  # another run's folder, perhaps of a run still going: never taken over
                raise _held(self.out, held[0])
        claimed = False
        try:
            self._check_writable()
            if not config.resume:
                self._claim()
                claimed = True
            # what a process killed while writing left behind (a checkpoint of FRRN B: 100 MB);
            # only once the folder is this run's: another run's writes in progress are not stale
            remove_stale_temporaries(self.out, ("last.npz", "best.npz", *TEXT_FILES, *FIGURES))
            self._set_up(config)
        except BaseException:
            # a run that never started leaves the folder as it found it; one that did not win
            # the folder touches nothing in it (another run may be setting up there)
            if claimed:
                (self.out / "config.json").unlink(missing_ok=True)
                self._remove_if_empty(made)
            raise

    def _claim(self):
        """Make the folder this run's: config.json is created only if absent, in one step, so of
        two runs started into one folder at once the second is refused."""
        try:
            atomic_write_text(self.out / "config.json", self._config_json(), exclusive=True)
        except OSError:
            if (self.out / "config.json").exists():  # the other run won (its clean-up may also
                raise _held(self.out, "config.json") from None  # have taken our temporary file)
            raise

    def _config_json(self):
        return json.dumps(dataclasses.asdict(self.config), indent=1)

    def _remove_if_empty(self, made):
        """A run folder this run made and nothing was written to goes again: a bad --data or size,
        or a full disk at the first write, leaves no empty run folder behind."""
        if made and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def _set_up(self, config):
        """The data, the model, the optimiser and its schedule, and the loader of the run."""
        self.root = ensure_synthetic() if config.data == "synthetic" else Path(config.data)
        self.train_set = Cityscapes(self.root, "train", config.downsample, augment=True,
                                    max_shift=config.max_shift, seed=config.seed,
                                    cache_mb=config.cache_mb)
        self.val_set = Cityscapes(self.root, "val", config.downsample, for_training=False,
                                  cache_mb=config.cache_mb)
        self.model = build_model(config.model, seed=config.seed, checkpoint=config.checkpointing)
        self._check_image_size()
        self.model.to(config.device)
        self.optimizer = Adam(self.model.parameters(), lr=config.lr)
        if config.schedule == "cosine":
            self.schedule = CosineLR(self.optimizer, config.steps, final_lr=config.lr * 0.02)
        elif config.schedule == "poly":
            self.schedule = PolyLR(self.optimizer, config.steps)
        elif config.schedule == "step":
            self.schedule = StepLR(self.optimizer, (config.milestone,))
        else:
            self.schedule = None
        self.loader = DataLoader(self.train_set, config.batch_size, shuffle=True, drop_last=True,
                                 num_workers=config.num_workers, seed=config.seed)
        self.step = 0
        self.best_miou = -1.0
        self.history = {"steps": [], "losses": [], "val_steps": [], "val_ious": []}
        self._restarted = False
        if config.resume and self._saved is not None:
            self._resume(*self._saved)
        elif config.resume:  # no checkpoint yet: step 0, and a log of this start's steps only
            atomic_write_text(self.out / "log.jsonl", "")
            self._restarted = True
        self._saved = None

    def _check_image_size(self):
        """The downsampled images must fit the model (sides positive multiples of its deepest
        pooling, and two values per channel there for batch norm); if not, name the --downsample
        factors (or the batch size) that do, before any image is downsampled or any training done."""
        full_height, full_width = read_image(self.train_set.frames[0].image_path).shape[:2]
        height, width = full_height // self.config.downsample, full_width // self.config.downsample
        factor = self.model.factor

        def fits(side):
            return side >= factor and side % factor == 0

        if fits(height) and fits(width):
            self.model.check_batch_norm_size(self.config.batch_size, height, width,
                                             fix="--batch-size 2 or more, or a smaller --downsample")
            return
        fitting = [d for d in range(1, 33) if fits(full_height // d) and fits(full_width // d)]
        advice = (f"use --downsample {', '.join(map(str, fitting[:-1]))} or {fitting[-1]}"
                  if len(fitting) > 1 else f"use --downsample {fitting[0]}" if fitting
                  else "no --downsample factor fits these images")
        raise ValueError(f"{self.model.name} needs image sides that are positive multiples of "
                         f"{factor}, but --downsample {self.config.downsample} makes the "
                         f"{full_height}x{full_width} images {height}x{width}: {advice}")

    # --- files -------------------------------------------------------------------------------------
    def _check_writable(self):
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            # a probe of this process's own: two runs starting at once must not share one
            descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.out)
            os.close(descriptor)
            os.unlink(probe)
        except OSError as error:
            fix = ("make it writable to resume the run there" if self.config.resume
                   else "choose another with --out")
            raise PermissionError(f"output folder {self.out} is not writable ({error.strerror}): "
                                  f"{fix}") from None

    def _log(self, record):
        path = self.out / "log.jsonl"
        try:
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:
            raise disk_error(path, error, KEPT_ON_DISK_ERROR) from None

    def _meta(self):
        return {"model": self.config.model,
                "num_classes": self.model.num_classes, "step": self.step,
                "best_miou": self.best_miou, "history": self.history,
                "schedule": self.schedule.state_dict() if self.schedule else None,
                "config": dataclasses.asdict(self.config)}

    def _check_weights_finite(self):
        """Refuse to go on from weights that are no longer finite: a step whose loss was finite can
        still leave NaN or inf in them (an overflowing gradient), and a checkpoint of them would be
        offered as the run's last good state."""
        for name, value in [*self.model.named_parameters(), *self.model.named_buffers()]:
            xp = get_array_module(value.data)
            if not bool(xp.isfinite(value.data).all()):
                kept = (f"the last good checkpoint is {self.out / 'last.npz'}; "
                        if (self.out / "last.npz").exists() else "")
                raise TrainingDiverged(f"the weights became NaN or infinite by step {self.step} "
                                       f"({name}): stopped without saving them; {kept}start a new "
                                       f"run (another --out) with a lower --lr")

    def save(self, name="last.npz", checked=False):
        """Write a checkpoint of the run; ``checked``: the weights were just found finite."""
        if not checked:
            self._check_weights_finite()
        return save_checkpoint(self.out / name, self.model.state_dict(),
                               self.optimizer.state_dict(), self._meta(),
                               then=f"the {name} that was there, if any, is unchanged: {{fix}}, "
                                    f"then continue with --resume")

    def _load_resumable(self):
        """The checkpoint to resume, refused if the run was started with other settings: a resumed
        run must be the run that stopped (same data, model, schedule, batches, augmentation)."""
        path = _last_checkpoint(self.out)
        if path is None:  # stopped before its first checkpoint: started again, with its settings
            meta, saved = None, _saved_config(self.out)
        else:
            model_state, optim_state, meta = load_checkpoint(path)
            if meta.get("model") != self.config.model:
                raise CheckpointError(f"checkpoint {path} is from model {meta.get('model')!r}, "
                                      f"not {self.config.model!r}: pass --model {meta.get('model')}")
            self._check_best(model_state)
            saved = dict(meta.get("config") or {})
        if saved.get("data", "synthetic") != "synthetic":
            saved["data"] = str(Path(saved["data"]).resolve())
        differ = [name for name in RUN_SETTINGS
                  if name in saved and saved[name] != getattr(self.config, name)]
        if meta is not None and int(meta.get("step", 0)) > self.config.steps:
            raise CheckpointError(f"--resume: the run in {self.out} is at step {meta['step']}, past "
                                  f"--steps {self.config.steps}: give more steps to train longer")
        if differ:
            was = ", ".join(f"{name}={saved[name]!r}" for name in differ)
            now = ", ".join(f"{name}={getattr(self.config, name)!r}" for name in differ)
            raise CheckpointError(f"--resume: the run in {self.out} was started with {was}, not "
                                  f"{now}: a resumed run keeps its settings (minifrrn train --resume "
                                  f"takes those left out from the run); start a new run in another "
                                  f"--out to change them")
        return None if path is None else (path, model_state, optim_state, meta)

    def _check_best(self, last_state):
        """Read best.npz whole now, as the final evaluation will after training: a corrupt one, or
        one of another model or other shapes than ``last_state`` (last.npz's weights), is named
        before any step is taken, not after the last."""
        best = self.out / "best.npz"
        if not best.exists():
            return
        advice = ("move it away and resume; the next validation that beats the run's best "
                  "writes a new one")
        try:
            best_state, _, meta = load_checkpoint(best)
        except CheckpointError:
            raise CheckpointError(f"--resume: {best} is corrupt or not a checkpoint: {advice}") \
                from None
        if meta.get("model") != self.config.model:
            raise CheckpointError(f"--resume: {best} is of model {meta.get('model')!r}, not the "
                                  f"run's {self.config.model!r}: {advice}")
        shapes = {name: np.shape(value) for name, value in best_state.items()}
        if shapes != {name: np.shape(value) for name, value in last_state.items()}:
            raise CheckpointError(f"--resume: {best} does not hold the weights of the run's model "
                                  f"(other names or shapes than last.npz's): {advice}")

    def _resume(self, path, model_state, optim_state, meta):
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optim_state)
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {error}") from None
        if self.schedule and meta.get("schedule"):
            self.schedule.load_state_dict(meta["schedule"])
        self.step = int(meta["step"])
        self.best_miou = float(meta.get("best_miou", -1.0))
        self.history = meta.get("history", self.history)
        self._truncate_log()

    def _truncate_log(self):
        """Drop the log records of steps after the checkpoint, and the final evaluation of a run
        that had ended: the resumed run logs them again (the evaluation at its own end)."""
        log = self.out / "log.jsonl"
        if log.exists():
            kept = []
            # undecodable bytes and lines that are no record (cut short by a crash while they were
            # written, or damaged since) are dropped with the records after the checkpoint
            for line in log.read_bytes().decode("utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                step = record.get("step") if isinstance(record, dict) else None
                if (isinstance(step, int) and step <= self.step
                        and "averageScoreClasses" not in record):
                    kept.append(line)
            # rewritten whole or not at all: a crash here must not take the history with it
            atomic_write_text(log, "".join(line + "\n" for line in kept))

    # --- the loop ----------------------------------------------------------------------------------
    def loss_fn(self, logits, target):
        if self.config.loss == "ce":
            return F.cross_entropy(logits, target)
        return F.bootstrapped_cross_entropy(logits, target)

    def train_step(self, batch):
        device = self.config.device
        x = tensor(to_device(batch["image"], device))
        target = to_device(batch["target"], device)
        logits = self.model(x)
        loss = self.loss_fn(logits, target)
        value = float(loss.item())
        if not math.isfinite(value):
            kept = (f"the last good checkpoint is {self.out / 'last.npz'}; "
                    if (self.out / "last.npz").exists() else "")
            raise TrainingDiverged(f"the loss became {value} at step {self.step + 1}: stopped; "
                                   f"{kept}start a new run (another --out) with a lower --lr")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.schedule:
            self.schedule.step()
        return value

    def validate(self):
        """Training-resolution mIoU over trainIds on the val split."""
        self.model.eval()
        matrix = ConfusionMatrix()
        count = len(self.val_set) if self.config.val_frames is None else min(
            self.config.val_frames, len(self.val_set))
        for start in range(0, count, self.config.batch_size):
            samples = [self.val_set.load(i) for i in range(start, min(start + self.config.batch_size,
                                                                       count))]
            scores = predict_scores(self.model, np.stack([s["image"] for s in samples]),
                                    self.config.device)
            matrix.add(scores.argmax(axis=1), to_device(np.stack([s["target"] for s in samples]),
                                                        self.config.device))
        self.model.train()
        return matrix.miou()

    def _progress(self, loss, lr, started, start_step, images):
        done = self.step - start_step
        elapsed = time.perf_counter() - started
        rate = images / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (self.config.steps - self.step) if done else 0.0
        line = (f"step {self.step}/{self.config.steps}  loss {loss:.4f}  {rate:.1f} img/s  "
                f"lr {lr:.2e}  ETA {eta // 60:.0f}m{eta % 60:02.0f}s")
        if self.config.quiet:
            return
        if sys.stdout.isatty():
            filled = 24 * self.step // self.config.steps
            bar = "[" + "#" * filled + "." * (24 - filled) + "]"
            print("\r" + (bar + " " + line).ljust(110), end="", flush=True)
        elif self.step % 20 == 0 or self.step == self.config.steps:
            print(line, flush=True)

    def _say(self, text):
        if not self.config.quiet:
            if sys.stdout.isatty():
                print()
            print(text, flush=True)

    def run(self):
        config = self.config
        self.said_interrupted = False
        if self._restarted:
            self._say(f"{self.out} holds a run that stopped before its first checkpoint: starting "
                      f"it again from step 0 with its settings")
        atomic_write_text(self.out / "config.json", self._config_json())
        self._say(f"training {config.model} on {self.root} ({len(self.train_set)} train / "
                  f"{len(self.val_set)} val frames, {tuple(self.train_set[0]['image'].shape[1:])}) "
                  f"on {config.device}; run folder {self.out}")
        start_step, started, images = self.step, time.perf_counter(), 0
        per_epoch = len(self.loader)
        # Ctrl-C asks the loop to stop after the step in progress, so that the checkpoint holds the
        # state of a completed step (a forward cut short would already have moved BN statistics).
        # A second Ctrl-C interrupts at once.
        self._stop_requested = False
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            def request_stop(signum, frame):
                if self._stop_requested:
                    raise KeyboardInterrupt
                self._stop_requested = True
            previous_handler = signal.signal(signal.SIGINT, request_stop)
        try:
            while self.step < config.steps:
                epoch, offset = divmod(self.step, per_epoch)
                for batch in self.loader.batches(epoch, start=offset):
                    lr = self.optimizer.lr  # the rate this step uses (the schedule then moves it)
                    loss = self.train_step(batch)
                    self.step += 1
                    images += len(batch["name"])
                    self.history["steps"].append(self.step)
                    self.history["losses"].append(loss)
                    self._log({"step": self.step, "loss": loss, "lr": lr})
                    self._progress(loss, lr, started, start_step, images)
                    if self.step % config.val_every == 0 or self.step == config.steps:
                        self._validate_and_save()
                    if self._stop_requested:
                        self.save()
                        self.said_interrupted = True
                        # said even with quiet: where the run was saved and how it goes on
                        if sys.stdout.isatty():
                            print()  # below the progress line
                        print(f"interrupted at step {self.step}: saved {self.out / 'last.npz'}; "
                              f"continue with: minifrrn train --resume --out {self.out} (from "
                              f"Python: the same TrainConfig with resume=True, "
                              f"out={str(self.out)!r})", flush=True)
                        raise KeyboardInterrupt
                    if self.step >= config.steps:
                        break
        finally:
            self.loader.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        summary = {"step": self.step, "best_miou": self.best_miou, "out": str(self.out)}
        self._artefacts()
        if config.final_eval:
            model, _ = load_model(self.out / "best.npz", config.device) if (
                self.out / "best.npz").exists() else (self.model, None)
            results = evaluate_model(model, self.val_set, config.device, limit=config.val_frames,
                                     batch_size=config.batch_size)
            summary["official"] = {k: v for k, v in results.items() if k.startswith("average")}
            atomic_write_text(self.out / "results.json", json.dumps(results, indent=1))
            self._log({"step": self.step, **summary["official"]})
        return summary

    def _validate_and_save(self):
        self._check_weights_finite()
        miou = self.validate()
        self.history["val_steps"].append(self.step)
        self.history["val_ious"].append(miou)
        self._log({"step": self.step, "val_miou": miou})
        self._say(f"step {self.step}: validation mIoU {miou:.3f} (training resolution)")
        if miou > self.best_miou:
            self.best_miou = miou  # before saving, so that last.npz records the new best too
            # best.npz first: a crash between the two writes then leaves a last.npz whose
            # recorded best is at most what best.npz holds, never a best with no file behind it
            self.save("best.npz", checked=True)
        self.save("last.npz", checked=True)

    def _artefacts(self):
        from ..viz import plot_curves, save_prediction_grid
        h = self.history
        with self._writing(self.out / "curves.png"):
            plot_curves(self.out / "curves.png", h["steps"], h["losses"], h["val_steps"],
                        h["val_ious"])
        samples = [self.val_set.load(i) for i in range(min(4, len(self.val_set)))]
        scores = predict_scores(self.model.eval(), np.stack([s["image"] for s in samples]),
                                self.config.device)
        self.model.train()
        with self._writing(self.out / "predictions.png"):
            save_prediction_grid(self.out / "predictions.png", [s["image"] for s in samples],
                                 [s["target"] for s in samples], as_numpy(scores.argmax(axis=1)),
                                 [s["name"] for s in samples])

    @contextlib.contextmanager
    def _writing(self, path):
        """A full disk while writing ``path`` (a figure) becomes one line naming it."""
        try:
            yield
        except OSError as error:
            raise disk_error(path, error, KEPT_ON_DISK_ERROR) from None


def train(config: TrainConfig | None = None, **overrides):
    """Train with ``config`` (or ``TrainConfig(**overrides)``); returns the run summary."""
    config = config or TrainConfig(**overrides)
    return Trainer(config).run()
