"""The official metrics on hand-computed cases (cityscapesscripts' evalPixelLevelSemanticLabeling)."""
import re

import numpy as np
import pytest

import minifrrn as mf
from minifrrn.data.labels import AVG_CLASS_SIZE
from minifrrn.metrics import CityscapesEvaluator, ConfusionMatrix, format_table

ROAD, SIDEWALK, BUILDING, PERSON, RIDER, CAR, CARAVAN = 7, 8, 11, 24, 25, 26, 29


def test_perfect_prediction_scores_one():
    gt = np.array([[ROAD, ROAD, CAR, CAR], [SIDEWALK, PERSON, PERSON, 0]])
    inst = np.where(np.isin(gt, [CAR]), CAR * 1000, np.where(gt == PERSON, PERSON * 1000 + 1, gt))
    ev = CityscapesEvaluator()
    ev.add(gt, gt, inst)
    r = ev.results()
    for key in ("averageScoreClasses", "averageScoreInstClasses", "averageScoreCategories",
                "averageScoreInstCategories"):
        assert r[key] == 1.0
    assert np.isnan(r["classScores"]["sky"])  # absent and never predicted: dropped from the mean
    assert "Score Average" in format_table(r)


def seven_pixel_results():
    """The results of one 7-pixel frame, small enough to score by hand:

    GT:   road road road | sidewalk sidewalk | unlabeled(0) unlabeled(0)
    pred: road road side | sidewalk road     | road         sidewalk
    """
    gt = np.array([[ROAD, ROAD, ROAD, SIDEWALK, SIDEWALK, 0, 0]])
    pred = np.array([[ROAD, ROAD, SIDEWALK, SIDEWALK, ROAD, ROAD, SIDEWALK]])
    ev = CityscapesEvaluator()
    ev.add(pred, gt)
    return ev.results()


def test_class_iou_by_hand_with_void_ground_truth_free():
    r = seven_pixel_results()
    # road: TP 2, FN 1, FP 1 (the sidewalk pixel; the void pixel predicted road is not FP) -> 2/4
    assert r["classScores"]["road"] == pytest.approx(2 / 4)
    # sidewalk: TP 1, FN 1, FP 1 -> 1/3
    assert r["classScores"]["sidewalk"] == pytest.approx(1 / 3)
    assert r["averageScoreClasses"] == pytest.approx((0.5 + 1 / 3) / 2)
    # category flat: confusion inside the category is correct: TP 5, FN 0, FP 0
    assert r["categoryScores"]["flat"] == 1.0


def test_ignored_prediction_counts_as_false_negative():
    gt = np.array([[CAR, CAR, CAR, CAR]])
    pred = np.array([[CAR, CAR, CARAVAN, 0]])
    ev = CityscapesEvaluator()
    ev.add(pred, gt)
    assert ev.results()["classScores"]["car"] == pytest.approx(2 / 4)


def test_instance_weighted_iiou_by_hand():
    # two cars: a big one (6 px) half right, a small one (2 px) fully right
    gt = np.full((2, 6), ROAD)
    inst = gt.copy()
    gt[0, :] = CAR
    inst[0, :] = CAR * 1000 + 0
    gt[1, 4:] = CAR
    inst[1, 4:] = CAR * 1000 + 1
    pred = gt.copy()
    pred[0, :3] = ROAD            # big car: 3 of 6 right
    pred[1, 0] = CAR              # one road pixel predicted car: FP 1
    ev = CityscapesEvaluator()
    ev.add(pred, gt, inst)
    r = ev.results()
    w_big, w_small = AVG_CLASS_SIZE["car"] / 6, AVG_CLASS_SIZE["car"] / 2
    tp = 3 * w_big + 2 * w_small
    fn = 3 * w_big
    assert r["classInstScores"]["car"] == pytest.approx(tp / (tp + 1 + fn))
    assert r["classScores"]["car"] == pytest.approx(5 / (5 + 1 + 3))
    assert r["averageScoreInstClasses"] == pytest.approx(tp / (tp + 1 + fn))


def test_crowd_regions_are_excluded_from_iiou_but_count_in_iou():
    gt = np.array([[CAR, CAR, CAR, CAR]])
    inst = np.array([[CAR * 1000, CAR * 1000, CAR, CAR]])  # two pixels are a car group
    pred = np.array([[CAR, CAR, ROAD, ROAD]])
    ev = CityscapesEvaluator()
    ev.add(pred, gt, inst)
    r = ev.results()
    assert r["classScores"]["car"] == pytest.approx(2 / 4)
    assert r["classInstScores"]["car"] == pytest.approx(1.0)


def test_caravan_quirk_in_the_category_iiou():
    # car pixels predicted caravan: car IoU and vehicle category IoU drop, the vehicle category iIoU
    # TP does not (caravan is in the category mask)
    gt = np.array([[CAR, CAR, CAR, CAR, ROAD, ROAD]])
    inst = np.array([[CAR * 1000] * 4 + [ROAD, ROAD]])
    pred = np.array([[CAR, CAR, CARAVAN, CARAVAN, ROAD, CARAVAN]])
    ev = CityscapesEvaluator()
    ev.add(pred, gt, inst)
    r = ev.results()
    assert r["classScores"]["car"] == pytest.approx(2 / 4)
    # vehicle category IoU: L = non-ignored vehicle ids; caravan predictions are FN (not in L)
    assert r["categoryScores"]["vehicle"] == pytest.approx(2 / 4)
    # category iIoU: TP = all 4 instance pixels (caravan in the mask), FN 0, and the FP counts the
    # caravan predicted on a road pixel (FP over every instance-capable vehicle id)
    w = AVG_CLASS_SIZE["car"] / 4
    assert r["categoryInstScores"]["vehicle"] == pytest.approx(4 * w / (4 * w + 1))


def test_all_unlabeled_prediction_scores_zero_without_crashing():
    gt = np.array([[ROAD, CAR, PERSON, BUILDING]])
    inst = np.array([[ROAD, CAR * 1000, PERSON * 1000, BUILDING]])
    ev = CityscapesEvaluator()
    ev.add(np.zeros_like(gt), gt, inst)
    r = ev.results()
    for key in ("averageScoreClasses", "averageScoreInstClasses", "averageScoreCategories",
                "averageScoreInstCategories"):
        assert r[key] == 0.0


def test_bad_predictions_name_the_frame():
    ev = CityscapesEvaluator()
    gt = np.full((2, 2), ROAD)
    with pytest.raises(ValueError, match="frame x.*0..33"):
        ev.add(np.full((2, 2), 255), gt, name="x")
    with pytest.raises(ValueError, match="full resolution"):
        ev.add(np.full((2, 3), ROAD), gt)
    with pytest.raises(ValueError, match="single-channel"):
        ev.add(np.full((2, 2, 3), ROAD), gt)


def test_confusion_matrix_against_a_naive_loop():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, (6, 7))
    target = rng.integers(0, 5, (6, 7))
    target[0, :3] = 255
    cm = ConfusionMatrix(num_classes=5)
    cm.add(pred, target)
    naive = np.zeros((5, 5), int)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != 255:
            naive[t, p] += 1
    np.testing.assert_array_equal(cm.matrix, naive)
    iou = [naive[c, c] / (naive[c].sum() + naive[:, c].sum() - naive[c, c]) for c in range(5)]
    np.testing.assert_allclose(cm.iou(), iou)
    assert cm.miou() == pytest.approx(np.mean(iou))


def test_a_frame_without_instance_ids_makes_every_iiou_nan_and_leaves_iou_alone():
    rng = np.random.default_rng(21)
    gt = rng.choice([7, 24, 26, 0], size=(12, 16)).astype(np.uint8)
    inst = np.where(gt == 26, 26001, np.where(gt == 24, 24001, gt)).astype(np.int64)
    pred = np.where(rng.random(gt.shape) < 0.8, gt, 26).astype(np.uint8)
    pred[pred == 0] = 7
    complete, partial = CityscapesEvaluator(), CityscapesEvaluator()
    for evaluator in (complete, partial):
        evaluator.add(pred, gt, inst)
    complete.add(pred, gt, inst)
    partial.add(pred, gt, None)  # the same frame, its instanceIds missing
    whole, missing = complete.results(), partial.results()
    assert not np.isnan(whole["averageScoreInstClasses"])  # the check below can fail
    for key in ("averageScoreInstClasses", "averageScoreInstCategories"):
        assert np.isnan(missing[key])
    assert all(np.isnan(v) for v in missing["classInstScores"].values())
    assert all(np.isnan(v) for v in missing["categoryInstScores"].values())
    for key in ("averageScoreClasses", "averageScoreCategories"):
        assert missing[key] == whole[key]


@pytest.mark.parametrize("iid,what", [(40000, "label id 40 (no label)"),
                                      (7001, "label id 7 (road, a class without instances)")])
def test_an_instance_id_of_no_instance_class_is_named(iid, what):
    gt = np.full((4, 4), 7, np.uint8)
    inst = np.full((4, 4), 7, np.int64)
    inst[:2, :2] = iid
    with pytest.raises(ValueError, match=rf"instance id {iid} \(frame f\) names {re.escape(what)}"):
        CityscapesEvaluator().add(gt, gt, inst, name="f")


@pytest.mark.parametrize("prediction,target,error,message", [
    (np.full((4, 4), 19), np.zeros((4, 4), int), ValueError, "prediction holds 19, outside"),
    (np.zeros((4, 4), int), np.full((4, 4), 19), ValueError, "target holds 19, outside"),
    (np.full((4, 4), -1), np.zeros((4, 4), int), ValueError, "prediction holds -1"),
    (np.zeros((4, 6), int), np.zeros((6, 4), int), ValueError, "shape \\(4, 6\\) but target has"),
    (np.zeros((4, 4)), np.zeros((4, 4), int), TypeError, "integer trainIds, got float64")])
def test_confusion_matrix_refuses_ids_it_would_miscount(prediction, target, error, message):
    # 19 predicted for class 0 used to land in the cell (1, 0): counted, silently, as another class
    matrix = ConfusionMatrix()
    with pytest.raises(error, match=message):
        matrix.add(prediction, target)
    assert matrix.matrix.sum() == 0


def test_confusion_matrix_counts_void_targets_out_and_takes_lists_and_tensors():
    matrix = ConfusionMatrix()
    matrix.add([[0, 1], [2, 18]], mf.tensor(np.array([[0, 1], [255, 18]])))
    assert matrix.matrix.sum() == 3 and matrix.matrix[18, 18] == matrix.matrix[1, 1] == 1


def test_evaluator_names_a_ground_truth_of_the_wrong_kind():
    evaluator = CityscapesEvaluator()
    with pytest.raises(ValueError, match="ground truth must be a single-channel .* \\(4, 4, 3\\)"):
        evaluator.add(np.full((4, 4), ROAD), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown label id 255: give the .*labelIds.png maps, not "
                                         "trainIds"):
        evaluator.add(np.full((4, 4), ROAD), np.full((4, 4), 255))


def test_results_carry_the_official_priors_and_labels():
    # 7 ground-truth pixels: road 3, sidewalk 2, unlabeled 2 (void pixels count in the priors)
    r = seven_pixel_results()
    assert r["priors"]["road"] == pytest.approx(3 / 7)
    assert r["priors"]["sidewalk"] == pytest.approx(2 / 7)
    assert r["priors"]["unlabeled"] == pytest.approx(2 / 7) and r["priors"]["car"] == 0
    assert r["labels"]["road"] == ROAD and r["labels"]["caravan"] == CARAVAN
    assert len(r["labels"]) == len(r["priors"]) == 34
    assert all(np.isnan(p) for p in CityscapesEvaluator().results()["priors"].values())
