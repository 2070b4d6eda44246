"""The Cityscapes label table (cityscapesscripts/helpers/labels.py) and the lookup tables built
from it: label id -> trainId, trainId -> label id, the colour palette."""
from __future__ import annotations

from collections import namedtuple

import numpy as np

Label = namedtuple("Label", "name id trainId category catId hasInstances ignoreInEval color")

LABELS = [
    Label("unlabeled", 0, 255, "void", 0, False, True, (0, 0, 0)),
    Label("ego vehicle", 1, 255, "void", 0, False, True, (0, 0, 0)),
    Label("rectification border", 2, 255, "void", 0, False, True, (0, 0, 0)),
    Label("out of roi", 3, 255, "void", 0, False, True, (0, 0, 0)),
    Label("static", 4, 255, "void", 0, False, True, (0, 0, 0)),
    Label("dynamic", 5, 255, "void", 0, False, True, (111, 74, 0)),
    Label("ground", 6, 255, "void", 0, False, True, (81, 0, 81)),
    Label("road", 7, 0, "flat", 1, False, False, (128, 64, 128)),
    Label("sidewalk", 8, 1, "flat", 1, False, False, (244, 35, 232)),
    Label("parking", 9, 255, "flat", 1, False, True, (250, 170, 160)),
    Label("rail track", 10, 255, "flat", 1, False, True, (230, 150, 140)),
    Label("building", 11, 2, "construction", 2, False, False, (70, 70, 70)),
    Label("wall", 12, 3, "construction", 2, False, False, (102, 102, 156)),
    Label("fence", 13, 4, "construction", 2, False, False, (190, 153, 153)),
    Label("guard rail", 14, 255, "construction", 2, False, True, (180, 165, 180)),
    Label("bridge", 15, 255, "construction", 2, False, True, (150, 100, 100)),
    Label("tunnel", 16, 255, "construction", 2, False, True, (150, 120, 90)),
    Label("pole", 17, 5, "object", 3, False, False, (153, 153, 153)),
    Label("polegroup", 18, 255, "object", 3, False, True, (153, 153, 153)),
    Label("traffic light", 19, 6, "object", 3, False, False, (250, 170, 30)),
    Label("traffic sign", 20, 7, "object", 3, False, False, (220, 220, 0)),
    Label("vegetation", 21, 8, "nature", 4, False, False, (107, 142, 35)),
    Label("terrain", 22, 9, "nature", 4, False, False, (152, 251, 152)),
    Label("sky", 23, 10, "sky", 5, False, False, (70, 130, 180)),
    Label("person", 24, 11, "human", 6, True, False, (220, 20, 60)),
    Label("rider", 25, 12, "human", 6, True, False, (255, 0, 0)),
    Label("car", 26, 13, "vehicle", 7, True, False, (0, 0, 142)),
    Label("truck", 27, 14, "vehicle", 7, True, False, (0, 0, 70)),
    Label("bus", 28, 15, "vehicle", 7, True, False, (0, 60, 100)),
    Label("caravan", 29, 255, "vehicle", 7, True, True, (0, 0, 90)),
    Label("trailer", 30, 255, "vehicle", 7, True, True, (0, 0, 110)),
    Label("train", 31, 16, "vehicle", 7, True, False, (0, 80, 100)),
    Label("motorcycle", 32, 17, "vehicle", 7, True, False, (0, 0, 230)),
    Label("bicycle", 33, 18, "vehicle", 7, True, False, (119, 11, 32)),
    Label("license plate", -1, -1, "vehicle", 7, False, True, (0, 0, 142)),
]

NUM_CLASSES = 19
VOID = 255
ID_TO_LABEL = {label.id: label for label in LABELS}
NAME_TO_LABEL = {label.name: label for label in LABELS}
EVAL_IDS = [label.id for label in LABELS if label.id >= 0 and not label.ignoreInEval]

#: label id -> trainId (255 for void and ignored ids)
ID2TRAIN = np.full(256, VOID, np.uint8)
for _label in LABELS:
    if 0 <= _label.id and _label.trainId not in (255, -1):
        ID2TRAIN[_label.id] = _label.trainId

#: trainId -> label id, for writing predictions in the official format
TRAIN2ID = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8)

#: the 19 evaluated class names in trainId order
CLASS_NAMES = [ID_TO_LABEL[int(i)].name for i in TRAIN2ID]

#: trainId -> RGB (void, 255, is black)
PALETTE = np.zeros((256, 3), np.uint8)
for _t, _i in enumerate(TRAIN2ID):
    PALETTE[_t] = ID_TO_LABEL[int(_i)].color

#: label id -> RGB (for gtFine_color.png)
ID_PALETTE = np.zeros((256, 3), np.uint8)
for _label in LABELS:
    if _label.id >= 0:
        ID_PALETTE[_label.id] = _label.color

#: average instance sizes over the training set, used to weight the instance-level scores
AVG_CLASS_SIZE = {
    "bicycle": 4672.3249222261, "caravan": 36771.8241758242, "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518, "bus": 35732.1511111111, "train": 67583.7075812274,
    "car": 12794.0202738185, "person": 3462.4756337644, "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}
