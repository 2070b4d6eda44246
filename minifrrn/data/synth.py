"""Synthetic street scenes written as real Cityscapes-format files.

Cityscapes needs an account and may not be redistributed, so minifrrn ships a generator of street
scenes in the dataset's exact layout (``leftImg8bit``, ``gtFine`` labelIds / instanceIds / color /
polygons) as its embedded default data set. A scene is drawn in painter's order: sky with clouds,
buildings with windows, trees, a road in perspective with lane markings, sidewalks and terrain,
then poles with signs and traffic lights, cars (some in a crowd "car group"), persons, riders on
bicycles, and the ego vehicle's bonnet at the bottom. Colours vary per object and overlap between
classes (grey cars, grey buildings, grey road), every surface gets shading, texture and noise, and
the lighting changes per scene, so a network has to use shape and context rather than colour alone.

Everything is vectorised NumPy on bounding boxes; a 128×256 frame takes a few milliseconds.

The label PNGs are the ground truth. ``polygons.json`` is there for the format's sake and is only an
outline: it lists the objects' boxes and ellipses as polygons and the road as one triangle, but the
ground plane (sidewalk, terrain) is painted per pixel and has no polygon, so redrawing the file
does not give the PNGs back. Read labels from ``labelIds.png``, as the official tools do.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..autograd import is_whole_number
from .augment import check_seed
from .labels import ID_PALETTE

__all__ = ["generate", "ensure_synthetic", "default_synthetic_root", "render_scene", "SPLIT_CITIES",
           "SYNTH_VERSION"]

SYNTH_VERSION = "synthetic-v1"
MAX_SIDE = 4096  # pixels: twice Cityscapes' width, and a frame's drawing well inside memory
SPLIT_CITIES = {"train": ["aachen", "bochum"], "val": ["frankfurt", "lindau", "munster"]}

# label ids used by the generator
UNLABELED, EGO, GROUND, ROAD, SIDEWALK, PARKING = 0, 1, 6, 7, 8, 9
BUILDING, WALL, FENCE, POLE, LIGHT, SIGN = 11, 12, 13, 17, 19, 20
VEGETATION, TERRAIN, SKY = 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BICYCLE = 24, 25, 26, 27, 33


class _Canvas:
    """Image, label ids, instance ids and the polygon list of one frame."""

    def __init__(self, H, W, rng):
        self.H, self.W, self.rng = H, W, rng
        self.image = np.zeros((H, W, 3), np.float32)
        self.label = np.zeros((H, W), np.uint8)
        self.instance = np.zeros((H, W), np.uint16)
        self.objects = []
        self.instance_counts = {}
        self.yy, self.xx = np.mgrid[0:H, 0:W].astype(np.float32)

    def texture(self, shape, color, noise=0.04, shade=0.15):
        """A colour with vertical shading and per-pixel noise, shape (h, w, 3)."""
        h, w = shape
        rng = self.rng
        ramp = 1.0 + shade * (np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
                              * rng.uniform(-1, 1))
        grain = rng.normal(0, noise, (h, w, 1)).astype(np.float32)
        return np.clip(np.asarray(color, np.float32)[None, None] * ramp + grain, 0, 1)

    def paint(self, mask_box, mask, label_id, color, instance=None, polygon=None, name=None,
              noise=0.04, shade=0.15):
        """Paint ``mask`` (boolean, inside box (y0, y1, x0, x1)) with a textured colour and label."""
        y0, y1, x0, x1 = mask_box
        y0, y1 = max(int(y0), 0), min(int(y1), self.H)
        x0, x1 = max(int(x0), 0), min(int(x1), self.W)
        if y1 <= y0 or x1 <= x0:
            return False
        if mask is None:
            mask = np.ones((y1 - y0, x1 - x0), bool)
        else:
            mask = mask[:y1 - y0, :x1 - x0]
        if not mask.any():
            return False
        tex = self.texture((y1 - y0, x1 - x0), color, noise, shade)
        region = self.image[y0:y1, x0:x1]
        region[mask] = tex[mask]
        self.label[y0:y1, x0:x1][mask] = label_id
        self.instance[y0:y1, x0:x1][mask] = label_id if instance is None else instance
        if polygon is not None:
            self.objects.append({"label": name, "polygon": [[int(round(x)), int(round(y))]
                                                             for x, y in polygon]})
        return True

    def new_instance(self, label_id):
        k = self.instance_counts.get(label_id, 0)
        self.instance_counts[label_id] = k + 1
        return label_id * 1000 + k

    def rect(self, y0, y1, x0, x1, label_id, color, name, instance=None, **kw):
        poly = [[x0, y0], [x1 - 1, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]]
        return self.paint((y0, y1, x0, x1), None, label_id, color, instance, poly, name, **kw)

    def ellipse(self, cy, cx, ry, rx, label_id, color, name, instance=None, **kw):
        y0, y1, x0, x1 = int(cy - ry), int(math.ceil(cy + ry)) + 1, int(cx - rx), int(
            math.ceil(cx + rx)) + 1
        yy = np.arange(max(y0, 0), min(y1, self.H), dtype=np.float32)[:, None]
        xx = np.arange(max(x0, 0), min(x1, self.W), dtype=np.float32)[None, :]
        if yy.size == 0 or xx.size == 0:
            return False
        mask = ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        poly = [[cx + rx * np.cos(a), cy + ry * np.sin(a)] for a in angles]
        return self.paint((max(y0, 0), y1, max(x0, 0), x1), mask, label_id, color, instance, poly,
                          name, **kw)


def _vary(rng, color, amount=0.12):
    return np.clip(np.asarray(color) + rng.uniform(-amount, amount, 3), 0.02, 0.98)


def _grey(rng, low=0.25, high=0.7):
    g = rng.uniform(low, high)
    return np.clip(np.array([g, g, g]) + rng.uniform(-0.05, 0.05, 3), 0, 1)


def render_scene(rng, height=128, width=256):
    """Draw one street scene. Returns (image uint8 HxWx3, labelIds uint8, instanceIds uint16,
    polygons dict)."""
    H, W = height, width
    c = _Canvas(H, W, rng)
    horizon = int(H * rng.uniform(0.36, 0.5))
    vx = W * rng.uniform(0.38, 0.62)  # vanishing point

    # --- sky with clouds --------------------------------------------------------------------------
    sky_color = _vary(rng, (0.45, 0.62, 0.85), 0.15)
    c.rect(0, horizon + 2, 0, W, SKY, sky_color, "sky", noise=0.02, shade=0.3)
    for _ in range(rng.integers(0, 4)):
        c.ellipse(rng.uniform(0, horizon * 0.6), rng.uniform(0, W), rng.uniform(1.0, max(2.0, H * 0.06)),
                  rng.uniform(W * 0.04, W * 0.15), SKY, _vary(rng, (0.88, 0.9, 0.93), 0.05), "sky",
                  noise=0.03)

    # --- buildings along both sides ---------------------------------------------------------------
    for side in (-1, 1):
        x = vx + side * rng.uniform(4, 12)
        while 0 <= x < W:
            bw = W * rng.uniform(0.08, 0.22)
            top = horizon - H * rng.uniform(0.12, 0.45)
            x0, x1 = (x, x + bw) if side > 0 else (x - bw, x)
            base = horizon + H * 0.02 * rng.uniform(0, 1)
            color = _grey(rng, 0.3, 0.75) if rng.random() < 0.6 else _vary(rng, (0.6, 0.45, 0.35))
            c.rect(int(top), int(base), int(x0), int(x1), BUILDING, color, "building", noise=0.035)
            # windows: a grid of darker or lighter panes, still "building"
            win = _vary(rng, (0.2, 0.25, 0.3), 0.1) if rng.random() < 0.7 else _vary(
                rng, (0.85, 0.8, 0.55), 0.1)
            ph, pw = max(2, int(H * 0.03)), max(2, int(bw * 0.12))
            for wy in range(int(top) + ph, int(base) - ph, 2 * ph):
                for wx in range(int(x0) + pw, int(x1) - pw, 2 * pw):
                    if rng.random() < 0.85:
                        c.rect(wy, wy + ph, wx, wx + pw, BUILDING, win, "building", noise=0.02)
            x += side * bw

    # --- a wall or fence segment sometimes, trees behind the sidewalk -----------------------------
    if rng.random() < 0.35:
        x0 = rng.uniform(0, W * 0.7)
        x1 = int(x0 + W * rng.uniform(0.1, 0.3))  # the random draws in their old order: same scenes
        label_id = WALL if rng.random() < 0.5 else FENCE
        c.rect(int(horizon - H * 0.06), horizon + 2, int(x0), x1, label_id,
               _vary(rng, (0.55, 0.5, 0.5)), "wall" if label_id == WALL else "fence")
    for _ in range(rng.integers(1, 5)):
        cx = rng.uniform(0, W)
        r = H * rng.uniform(0.07, 0.18)
        cy = horizon - r * rng.uniform(0.3, 1.2)
        c.rect(int(cy), horizon + 3, int(cx - r * 0.08), int(cx + r * 0.08) + 1, VEGETATION,
               _vary(rng, (0.35, 0.25, 0.15)), "vegetation")
        c.ellipse(cy, cx, r, r * rng.uniform(0.8, 1.4), VEGETATION,
                  _vary(rng, (0.3, 0.5, 0.2), 0.12), "vegetation", noise=0.08)

    # --- ground plane: road, sidewalks, terrain, in perspective -----------------------------------
    depth = np.maximum(c.yy - horizon, 0)[horizon:]
    dx = np.abs(c.xx[horizon:] - vx)
    road_half = depth * rng.uniform(1.1, 1.6)
    walk = road_half + depth * rng.uniform(0.35, 0.7)
    ground = np.full(depth.shape, TERRAIN, np.uint8)
    ground[dx < walk] = SIDEWALK
    ground[dx < road_half] = ROAD
    colors = {ROAD: _grey(rng, 0.28, 0.5), SIDEWALK: _vary(rng, (0.62, 0.58, 0.6), 0.1),
              TERRAIN: _vary(rng, (0.45, 0.55, 0.3), 0.1)}
    for label_id, name in ((TERRAIN, "terrain"), (SIDEWALK, "sidewalk"), (ROAD, "road")):
        mask = ground == label_id
        if rng.random() < 0.3 and label_id == TERRAIN:
            label_id, name = VEGETATION, "vegetation"  # hedges instead of grass
        c.paint((horizon, H, 0, W), mask, label_id, colors.get(label_id, _vary(rng, (0.3, 0.5, 0.2))),
                polygon=None, noise=0.05, shade=0.1)
    # lane markings (still road) and a parking strip (ignored id) sometimes
    rows = np.arange(horizon + 2, H)
    for offset in (0.0,):
        stripe = (rows // max(2, H // 24)) % 2 == 0
        for y in rows[stripe]:
            half = max(1, int((y - horizon) * 0.03))
            c.rect(y, y + 1, int(vx + offset - half), int(vx + offset + half) + 1, ROAD,
                   (0.85, 0.85, 0.8), "road", noise=0.03)
    if rng.random() < 0.4:
        y0 = int(horizon + (H - horizon) * rng.uniform(0.3, 0.6))
        side = rng.choice([-1, 1])
        x_edge = vx + side * (y0 - horizon) * 1.2
        c.rect(y0, y0 + int(H * 0.08), int(min(x_edge, x_edge + side * W * 0.15)),
               int(max(x_edge, x_edge + side * W * 0.15)), PARKING, _grey(rng, 0.4, 0.6), "parking")
    c.objects.append({"label": "road", "polygon": [[int(vx), horizon], [W - 1, H - 1], [0, H - 1]]})

    # --- objects, far to near ---------------------------------------------------------------------
    def scale_at(y):
        return max((y - horizon) / (H - horizon), 0.05)

    items = []
    for _ in range(rng.integers(2, 6)):
        items.append(("pole", horizon + (H - horizon) * rng.uniform(0.05, 0.8)))
    for _ in range(rng.integers(2, 7)):
        items.append(("car", horizon + (H - horizon) * rng.uniform(0.08, 0.85)))
    for _ in range(rng.integers(1, 6)):
        items.append(("person", horizon + (H - horizon) * rng.uniform(0.08, 0.9)))
    for _ in range(rng.integers(0, 3)):
        items.append(("rider", horizon + (H - horizon) * rng.uniform(0.1, 0.9)))
    if rng.random() < 0.5:
        items.append(("cargroup", horizon + (H - horizon) * rng.uniform(0.05, 0.2)))
    if rng.random() < 0.25:
        items.append(("truck", horizon + (H - horizon) * rng.uniform(0.1, 0.5)))
    items.sort(key=lambda item: item[1])

    for kind, foot in items:
        s = scale_at(foot)
        if kind in ("car", "truck", "cargroup"):
            side = rng.uniform(-1, 1)
            cx = vx + side * (foot - horizon) * 1.1
            cw = W * 0.28 * s * (1.5 if kind == "truck" else 1.0) * (2.5 if kind == "cargroup" else 1)
            ch = cw * rng.uniform(0.45, 0.6) * (1.4 if kind == "truck" else 1.0)
            if kind == "cargroup":
                c.rect(int(foot - ch), int(foot), int(cx - cw / 2), int(cx + cw / 2), CAR,
                       _grey(rng, 0.2, 0.6), "cargroup")
                continue
            label_id = TRUCK if kind == "truck" else CAR
            iid = c.new_instance(label_id)
            body = _grey(rng, 0.15, 0.8) if rng.random() < 0.5 else _vary(rng, rng.uniform(0.1, 0.9, 3))
            name = "truck" if kind == "truck" else "car"
            c.rect(int(foot - ch * 0.6), int(foot - ch * 0.12), int(cx - cw / 2), int(cx + cw / 2),
                   label_id, body, name, iid)
            c.rect(int(foot - ch), int(foot - ch * 0.55), int(cx - cw * 0.32), int(cx + cw * 0.32),
                   label_id, body * 0.9, name, iid)
            glass = _vary(rng, (0.25, 0.3, 0.38), 0.08)
            c.rect(int(foot - ch * 0.92), int(foot - ch * 0.62), int(cx - cw * 0.27),
                   int(cx + cw * 0.27), label_id, glass, name, iid, noise=0.02)
            for wx in (cx - cw * 0.3, cx + cw * 0.3):
                c.ellipse(foot - ch * 0.12, wx, ch * 0.13, cw * 0.09, label_id, (0.05, 0.05, 0.05),
                          name, iid)
        elif kind == "pole":
            side = rng.choice([-1, 1])
            px = vx + side * (foot - horizon) * rng.uniform(1.7, 2.1)
            ph = H * 0.55 * s + 4
            pw = max(1.0, W * 0.008 * s + 0.6)
            c.rect(int(foot - ph), int(foot), int(px - pw / 2), int(px + pw / 2) + 1, POLE,
                   _grey(rng, 0.3, 0.6), "pole")
            top = foot - ph
            if rng.random() < 0.5:
                r = max(1.5, W * 0.02 * s + 1)
                c.ellipse(top, px, r, r, SIGN, _vary(rng, (0.85, 0.8, 0.1), 0.12), "traffic sign")
            else:
                bh, bw = max(3, H * 0.08 * s + 2), max(2, W * 0.012 * s + 1.5)
                c.rect(int(top - bh / 2), int(top + bh / 2), int(px - bw), int(px + bw) + 1, LIGHT,
                       _vary(rng, (0.15, 0.15, 0.12), 0.05), "traffic light")
                lamp = [(0.9, 0.1, 0.1), (0.95, 0.7, 0.1), (0.1, 0.85, 0.3)][rng.integers(0, 3)]
                c.ellipse(top, px, max(0.7, bh * 0.15), max(0.7, bw * 0.6), LIGHT, lamp,
                          "traffic light")
        elif kind in ("person", "rider"):
            side = rng.choice([-1, 1])
            spread = rng.uniform(1.2, 2.0) if kind == "person" else rng.uniform(0.6, 1.3)
            px = vx + side * (foot - horizon) * spread
            ph = H * 0.38 * s + 3
            if kind == "rider":
                biid = c.new_instance(BICYCLE)
                br = ph * 0.18
                for wx in (px - ph * 0.25, px + ph * 0.25):
                    c.ellipse(foot - br, wx, br, br, BICYCLE, (0.1, 0.1, 0.1), "bicycle", biid)
                c.rect(int(foot - br * 1.4), int(foot - br * 1.0), int(px - ph * 0.25),
                       int(px + ph * 0.25), BICYCLE, _vary(rng, rng.uniform(0.1, 0.9, 3)), "bicycle",
                       biid)
                foot = foot - br * 1.2
                label_id, name = RIDER, "rider"
            else:
                label_id, name = PERSON, "person"
            iid = c.new_instance(label_id)
            cloth = _vary(rng, rng.uniform(0.05, 0.9, 3))
            c.rect(int(foot - ph * 0.45), int(foot), int(px - ph * 0.09), int(px + ph * 0.09) + 1,
                   label_id, cloth * 0.7, name, iid)
            c.ellipse(foot - ph * 0.62, px, ph * 0.2, ph * 0.13, label_id, cloth, name, iid)
            c.ellipse(foot - ph * 0.9, px, ph * 0.09, ph * 0.07, label_id,
                      _vary(rng, (0.8, 0.6, 0.5), 0.15), name, iid)

    # --- the ego vehicle's bonnet -----------------------------------------------------------------
    if rng.random() < 0.7:
        bonnet = int(H * rng.uniform(0.04, 0.1))
        yy = np.arange(H - bonnet, H, dtype=np.float32)[:, None]
        xx = np.arange(W, dtype=np.float32)[None, :]
        mask = (yy - (H - bonnet)) >= ((xx - W / 2) / (W / 2)) ** 2 * bonnet * 0.8
        c.paint((H - bonnet, H, 0, W), mask, EGO, _grey(rng, 0.05, 0.3), name="ego vehicle")

    # --- global lighting, colour cast and sensor noise ---------------------------------------------
    light = 1.0 + rng.uniform(-0.25, 0.25) * (c.xx / W - 0.5)[..., None]
    cast = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    img = c.image * light * cast * rng.uniform(0.75, 1.2)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    polygons = {"imgHeight": H, "imgWidth": W, "objects": c.objects}
    return image, c.label, c.instance, polygons


def _write_frame(folder_img, folder_gt, stem, image, label, instance, polygons):
    Image.fromarray(image, "RGB").save(folder_img / f"{stem}_leftImg8bit.png")
    Image.fromarray(label, "L").save(folder_gt / f"{stem}_gtFine_labelIds.png")
    Image.fromarray(instance.astype(np.uint16)).save(folder_gt / f"{stem}_gtFine_instanceIds.png")
    rgba = np.concatenate([ID_PALETTE[label], np.full(label.shape + (1,), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(folder_gt / f"{stem}_gtFine_color.png")
    (folder_gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps(polygons))


def generate(root, n_train=300, n_val=60, height=128, width=256, seed=0):
    """Write ``n_train`` + ``n_val`` synthetic frames under ``root`` in the Cityscapes layout.

    Reproducible for a given seed. Frame numbers are mostly 000019, as in Cityscapes, but not always.
    The frames are written into a temporary folder inside ``root`` and moved into place when all are
    done, so an interrupted run leaves no half-written data set. Returns the root as a ``Path``.
    """
    for name, value in (("frame counts", n_train), ("frame counts", n_val), ("sizes", height),
                        ("sizes", width), ("seed", seed)):
        if not is_whole_number(value):
            raise TypeError(f"synth: {name} must be whole numbers, got {value!r}")
    if height < 16 or width < 16:
        raise ValueError(f"synth: frames must be at least 16x16, got {height}x{width}")
    if max(height, width) > MAX_SIDE:  # drawing takes about 90 bytes a pixel (1.4 GB at 4096²)
        raise ValueError(f"synth: frames of at most {MAX_SIDE} pixels a side (Cityscapes' are "
                         f"2048x1024), got {height}x{width}")
    if n_train < 0 or n_val < 0:
        raise ValueError("synth: frame counts must be >= 0")
    check_seed(seed, "synth: the seed")
    root = Path(root)
    held = [name for name in ("leftImg8bit", "gtFine") if (root / name).exists()]
    if held == ["leftImg8bit"]:  # moved into place first: a generation killed before gtFine/ was
        raise FileExistsError(f"synth: {root} holds leftImg8bit/ but no gtFine/: if it is what an "
                              f"interrupted minifrrn synth left, remove {root / 'leftImg8bit'} "
                              f"and run again; otherwise choose another folder")
    if held:  # new frames among old ones would make a mixed data set, of mixed sizes perhaps
        raise FileExistsError(f"synth: {root} already holds a data set ({held[0]}/): choose a new "
                              f"or empty folder, or remove that one first")
    try:  # first, so that a bad --out is named before any frame is drawn
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"synth: output folder {root} cannot be made ({error.strerror}): "
                              f"choose another") from None
    _remove_abandoned(root, ".synth-tmp-*")  # left by generations killed here
    work = Path(tempfile.mkdtemp(prefix=".synth-tmp-", dir=root))
    try:
        for split, count in (("train", n_train), ("val", n_val)):
            cities = SPLIT_CITIES[split]
            for i in range(count):
                city = cities[i % len(cities)]
                seq = i // len(cities)
                frame = 19 if i % 5 else 100 + 7 * i  # not always 000019
                stem = f"{city}_{seq:06d}_{frame:06d}"
                folder_img = work / "leftImg8bit" / split / city
                folder_gt = work / "gtFine" / split / city
                folder_img.mkdir(parents=True, exist_ok=True)
                folder_gt.mkdir(parents=True, exist_ok=True)
                frame_rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
                _write_frame(folder_img, folder_gt, stem, *render_scene(frame_rng, height, width))
        for name in ("leftImg8bit", "gtFine"):
            (work / name).mkdir(exist_ok=True)  # no frames at all: still the layout
            os.replace(work / name, root / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def default_synthetic_root() -> Path:
    """Where the default synthetic data set lives: $MINIFRRN_CACHE or ~/.cache/minifrrn."""
    base = os.environ.get("MINIFRRN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "minifrrn")
    return Path(base) / SYNTH_VERSION


ABANDONED_AFTER_S = 24 * 3600  # a generation takes seconds; a day-old temporary folder is dead


def _remove_abandoned(parent, *patterns):
    """Remove the temporary folders in ``parent`` (matching ``patterns``) of generations that were
    killed (a crash or SIGKILL skips their own clean-up), recognised by age: none still running
    is a day old."""
    now = time.time()
    for folder in [path for pattern in patterns for path in parent.glob(pattern)]:
        try:
            if now - folder.stat().st_mtime > ABANDONED_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed by another process in the meantime
            pass


def ensure_synthetic(root=None, n_train=300, n_val=60, height=128, width=256, seed=0) -> Path:
    """Return the root of the synthetic data set, generating it first if it is absent.

    Generation writes into a temporary folder beside the target and renames it when complete, so an
    interrupted generation is never mistaken for a finished one. Processes that generate at once
    keep the first complete set and discard their own copies, so a complete set of the same
    settings is not replaced; only an incomplete one, or one of other settings, is moved aside and
    removed. (Not a lock: a set another process installs in the instant between this one's check
    and its move of a stale set would be moved aside too.)
    """
    root = Path(root) if root is not None else default_synthetic_root()
    settings = dict(n_train=n_train, n_val=n_val, height=height, width=width, seed=seed)
    if _is_complete(root, settings):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root.parent, root.name + ".tmp-*", root.name + ".old-*")
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    stale = None
    try:
        generate(tmp, **settings)
        (tmp / "COMPLETE.json").write_text(json.dumps(settings))
        if _is_complete(root, settings):  # another process finished first: use its set
            return root
        if root.exists():  # incomplete, or of other settings: moved aside, removed below
            stale = Path(tempfile.mkdtemp(prefix=root.name + ".old-", dir=root.parent))
            os.replace(root, stale / "set")
        try:
            os.replace(tmp, root)
        except OSError:  # another process put its complete set there in the meantime
            if not _is_complete(root, settings):
                raise
    finally:
        for folder in (tmp, stale):
            if folder is not None and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    return root


def _is_complete(root, settings):
    """Whether ``root`` holds a finished synthetic set of these settings."""
    try:
        return json.loads((root / "COMPLETE.json").read_text()) == settings
    except (OSError, ValueError):
        return False
