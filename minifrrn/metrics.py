"""The official Cityscapes pixel-level metrics, reproduced exactly, and a fast training-time mIoU.

``CityscapesEvaluator`` follows cityscapesscripts' evalPixelLevelSemanticLabeling:
a 34×34 confusion matrix over *label ids* (rows ground truth, columns prediction; every pixel counted),

* IoU of class c: TP / (TP + FP + FN), where FN counts every prediction on GT = c pixels that is not c,
  and FP counts predictions of c only on pixels whose GT id is *not ignored* (void GT is free);
* iIoU of class c: the same with TP and FN weighted per instance by avgClassSize / instance size
  (only pixels of individual instances, instanceIds > 1000), FP unweighted;
* category IoU: confusion inside a category counts as correct;
* category iIoU (human, vehicle): the category mask of the prediction includes *every*
  instance-capable id of the category, caravan and trailer too, and so does its FP;
* averages over the entries that are not NaN.

The official script refuses a frame without its instanceIds file. ``add`` accepts one (instance ids
``None``: during training, validation scores what it has), but then no instance-level score can be
right, since that frame's instances would be missing from TP and FN while its pixels still count
in FP: every iIoU is NaN once a frame has come without instance ids.

``ConfusionMatrix`` is the fast trainId version used for validation during training.
"""
from __future__ import annotations

import numpy as np

from .autograd import unwrap
from .backend import as_numpy, get_array_module
from .data.labels import AVG_CLASS_SIZE, ID_TO_LABEL, LABELS, NUM_CLASSES

__all__ = ["CityscapesEvaluator", "ConfusionMatrix", "format_table", "format_averages"]

NUM_IDS = 34
_IDS = range(NUM_IDS)
_IGNORED = np.array([ID_TO_LABEL[i].ignoreInEval for i in _IDS])
_EVAL_CLASSES = [i for i in _IDS if not _IGNORED[i]]
_INST_CLASSES = [i for i in _EVAL_CLASSES if ID_TO_LABEL[i].hasInstances]
_CATEGORIES = []
for _label in LABELS:
    if _label.category not in _CATEGORIES:
        _CATEGORIES.append(_label.category)
_CATEGORY_OF = np.array([ID_TO_LABEL[i].category for i in _IDS])
_INST_CATEGORIES = ["human", "vehicle"]
#: every instance-capable id of a category, ignored ones included (the category-iIoU mask)
_CATEGORY_ALL_INSTANCE_IDS = {cat: [l.id for l in LABELS if l.category == cat and l.hasInstances]
                              for cat in _INST_CATEGORIES}


def _div(a, b):
    return float(a) / float(b) if b > 0 else float("nan")


def _nanmean(values):
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


class CityscapesEvaluator:
    """Accumulate frames with ``add(prediction, gt_label_ids, gt_instance_ids)``; ``results()``
    returns the official scores under the official JSON keys."""

    def __init__(self):
        self.confusion = np.zeros((NUM_IDS, NUM_IDS), np.uint64)
        self.tp_weighted = np.zeros(NUM_IDS)
        self.fn_weighted = np.zeros(NUM_IDS)
        self.cat_tp_weighted = {c: 0.0 for c in _INST_CATEGORIES}
        self.cat_fn_weighted = {c: 0.0 for c in _INST_CATEGORIES}
        self.frames = 0
        self.frames_without_instances = 0  # any: every iIoU is NaN (module docstring)

    def add(self, prediction, gt_label_ids, gt_instance_ids=None, name=None):
        where = f" (frame {name})" if name else ""
        pred = as_numpy(prediction)
        gt = as_numpy(gt_label_ids)
        for what, array in (("prediction", pred), ("ground truth", gt)):
            if array.ndim != 2:
                raise ValueError(f"{what}{where} must be a single-channel (H, W) map of label ids, "
                                 f"got shape {array.shape}")
        if pred.shape != gt.shape:
            raise ValueError(f"prediction{where} is {pred.shape[1]}x{pred.shape[0]} but the ground "
                             f"truth is {gt.shape[1]}x{gt.shape[0]}: predict at full resolution")
        pred = pred.astype(np.int64)
        gt = gt.astype(np.int64)
        if pred.size and (pred.min() < 0 or pred.max() >= NUM_IDS):
            raise ValueError(f"prediction{where} holds id {int(pred.max())}: predictions must be "
                             f"label ids 0..33 (map trainIds with TRAIN2ID, never write 255)")
        if gt.size and (gt.min() < 0 or gt.max() >= NUM_IDS):
            raise ValueError(f"ground truth{where} holds unknown label id {int(gt.max())}: "
                             f"give the *_gtFine_labelIds.png maps, not trainIds (void 255)")
        self.confusion += np.bincount((gt * NUM_IDS + pred).ravel(),
                                      minlength=NUM_IDS * NUM_IDS).reshape(NUM_IDS, NUM_IDS).astype(
                                          np.uint64)
        if gt_instance_ids is None:
            self.frames_without_instances += 1
        else:
            inst = as_numpy(gt_instance_ids).astype(np.int64)
            if inst.shape != gt.shape:
                raise ValueError(f"instance ids{where} have shape {inst.shape}, labels {gt.shape}")
            for iid in np.unique(inst[inst > 1000]):
                lid = int(iid // 1000)
                label = ID_TO_LABEL.get(lid)
                if label is None or not (label.hasInstances or label.ignoreInEval):
                    what = "no label" if label is None else f"{label.name}, a class without instances"
                    raise ValueError(f"instance id {int(iid)}{where} names label id {lid} ({what}): "
                                     f"instanceIds hold labelId*1000+k only for classes with "
                                     f"instances (ids 24-33)")
                if label.ignoreInEval:
                    continue
                mask = inst == iid
                size = int(mask.sum())
                weight = AVG_CLASS_SIZE[label.name] / size
                hits = pred[mask]
                tp = int((hits == lid).sum())
                self.tp_weighted[lid] += tp * weight
                self.fn_weighted[lid] += (size - tp) * weight
                if label.category in _INST_CATEGORIES:
                    cat_tp = int(np.isin(hits, _CATEGORY_ALL_INSTANCE_IDS[label.category]).sum())
                    self.cat_tp_weighted[label.category] += cat_tp * weight
                    self.cat_fn_weighted[label.category] += (size - cat_tp) * weight
        self.frames += 1

    # --- scores --------------------------------------------------------------------------------
    def _fp(self, columns, exclude_rows):
        rows = [r for r in _IDS if not _IGNORED[r] and r not in exclude_rows]
        return self.confusion[np.ix_(rows, columns)].sum(dtype=np.float64)

    def class_iou(self, c):
        if _IGNORED[c]:
            return float("nan")
        tp = float(self.confusion[c, c])
        fn = float(self.confusion[c].sum(dtype=np.float64)) - tp
        return _div(tp, tp + self._fp([c], {c}) + fn)

    def class_iiou(self, c):
        if _IGNORED[c] or not ID_TO_LABEL[c].hasInstances or self.frames_without_instances:
            return float("nan")
        tp, fn = self.tp_weighted[c], self.fn_weighted[c]
        return _div(tp, tp + self._fp([c], {c}) + fn)

    def category_iou(self, category):
        ids = [i for i in _IDS if _CATEGORY_OF[i] == category and not _IGNORED[i]]
        if not ids:
            return float("nan")
        block = self.confusion[np.ix_(ids, ids)].sum(dtype=np.float64)
        fn = self.confusion[ids].sum(dtype=np.float64) - block
        others = {i for i in _IDS if _CATEGORY_OF[i] == category}
        return _div(block, block + self._fp(ids, others) + fn)

    def category_iiou(self, category):
        if category not in _INST_CATEGORIES or self.frames_without_instances:
            return float("nan")
        all_ids = _CATEGORY_ALL_INSTANCE_IDS[category]
        others = {i for i in _IDS if _CATEGORY_OF[i] == category}
        tp, fn = self.cat_tp_weighted[category], self.cat_fn_weighted[category]
        return _div(tp, tp + self._fp(all_ids, others) + fn)

    def results(self):
        names = {i: ID_TO_LABEL[i].name for i in _IDS}
        class_scores = {names[i]: self.class_iou(i) for i in _IDS}
        class_inst = {names[i]: self.class_iiou(i) for i in _IDS}
        cat_scores = {c: self.category_iou(c) for c in _CATEGORIES}
        cat_inst = {c: self.category_iiou(c) for c in _CATEGORIES}
        total = float(self.confusion.sum(dtype=np.float64))
        # as the official script writes them: each label's share of the counted ground-truth
        # pixels (its row of the confusion matrix), and each label's id, by name
        priors = {names[i]: _div(float(self.confusion[i].sum(dtype=np.float64)), total)
                  for i in _IDS}
        return {
            "averageScoreClasses": _nanmean(list(class_scores.values())),
            "averageScoreInstClasses": _nanmean(list(class_inst.values())),
            "averageScoreCategories": _nanmean(list(cat_scores.values())),
            "averageScoreInstCategories": _nanmean(list(cat_inst.values())),
            "classScores": class_scores, "classInstScores": class_inst,
            "categoryScores": cat_scores, "categoryInstScores": cat_inst,
            "confMatrix": self.confusion.tolist(),
            "priors": priors, "labels": {names[i]: i for i in _IDS},
        }


def format_averages(results):
    """The four official averages on one line (results as ``CityscapesEvaluator.results()``)."""
    return (f"IoU class {results['averageScoreClasses']:.3f}  "
            f"iIoU class {results['averageScoreInstClasses']:.3f}  "
            f"IoU category {results['averageScoreCategories']:.3f}  "
            f"iIoU category {results['averageScoreInstCategories']:.3f}")


def format_table(results):
    """The per-class and per-category tables and the four averages, as printable text."""
    lines = [f"{'class':<15}{'IoU':>8}{'iIoU':>8}"]
    for i in _EVAL_CLASSES:
        name = ID_TO_LABEL[i].name
        iou, iiou = results["classScores"][name], results["classInstScores"][name]
        lines.append(f"{name:<15}{iou:>8.3f}{'' if np.isnan(iiou) and not ID_TO_LABEL[i].hasInstances else f'{iiou:8.3f}':>8}")
    lines.append("-" * 31)
    lines.append(f"{'Score Average':<15}{results['averageScoreClasses']:>8.3f}"
                 f"{results['averageScoreInstClasses']:>8.3f}")
    lines.append("")
    lines.append(f"{'category':<15}{'IoU':>8}{'iIoU':>8}")
    for c in _CATEGORIES:
        if c == "void":
            continue
        iiou = results["categoryInstScores"][c]
        lines.append(f"{c:<15}{results['categoryScores'][c]:>8.3f}"
                     f"{'' if c not in _INST_CATEGORIES else f'{iiou:8.3f}':>8}")
    lines.append("-" * 31)
    lines.append(f"{'Score Average':<15}{results['averageScoreCategories']:>8.3f}"
                 f"{results['averageScoreInstCategories']:>8.3f}")
    return "\n".join(lines)


class ConfusionMatrix:
    """A (num_classes × num_classes) confusion matrix over trainIds, void pixels skipped.

    ``add(prediction, target)`` accepts NumPy or CuPy arrays (the counting runs where the data is);
    ``iou()`` per class (NaN for classes absent from both), ``miou()`` their mean over non-NaN,
    ``pixel_accuracy()``.
    """

    def __init__(self, num_classes=NUM_CLASSES, ignore_index=255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, prediction, target):
        prediction, target = unwrap(prediction), unwrap(target)
        xp = get_array_module(prediction, target)
        prediction, target = xp.asarray(prediction), xp.asarray(target)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction has shape {tuple(prediction.shape)} but target has "
                             f"{tuple(target.shape)}: pass trainId maps of one size (the argmax "
                             f"of the scores over classes, scores.argmax(axis=1))")
        for name, array in (("prediction", prediction), ("target", target)):
            if array.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer trainIds, got {array.dtype}: take "
                                f"scores.argmax(axis=1) for predictions")
        pred = prediction.astype(xp.int64).ravel()
        tgt = target.astype(xp.int64).ravel()
        valid = tgt != self.ignore_index
        k = self.num_classes
        pred, tgt = pred[valid], tgt[valid]
        # an id outside 0..k−1 would land in another cell of the flattened matrix, or past it;
        # the four extremes come to the host in one transfer (one wait for a GPU)
        extremes = (as_numpy(xp.stack([pred.min(), pred.max(), tgt.min(), tgt.max()])).tolist()
                    if pred.size else [0, 0, 0, 0])
        for name, low, high in (("prediction", *extremes[:2]), ("target", *extremes[2:])):
            if low < 0 or high >= k:
                raise ValueError(f"{name} holds {low if low < 0 else high}, outside the trainIds "
                                 f"0..{k - 1} (void is {self.ignore_index} in the target only): map "
                                 f"label ids to trainIds first")
        counts = xp.bincount(tgt * k + pred, minlength=k * k)
        self.matrix += as_numpy(counts[:k * k]).reshape(k, k)

    def iou(self):
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self):
        return _nanmean(list(self.iou()))

    def pixel_accuracy(self):
        total = self.matrix.sum()
        return float(np.diag(self.matrix).sum() / total) if total else float("nan")

    def reset(self):
        self.matrix[...] = 0
