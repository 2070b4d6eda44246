"""The label table, the Cityscapes reader, augmentation, the loader and the synthetic scenes."""
import json
import threading

import numpy as np
import pytest
from PIL import Image

from data_fixtures import write_frame
from minifrrn.data import Cityscapes, DataLoader, downsample_labels, labels, synth, write_prediction
from minifrrn.data.augment import gamma_from, translate


def test_label_table_and_luts():
    assert len(labels.LABELS) == 35
    expected = np.full(256, 255, np.uint8)
    expected[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = np.arange(19)
    np.testing.assert_array_equal(labels.ID2TRAIN, expected)
    np.testing.assert_array_equal(labels.ID2TRAIN[labels.TRAIN2ID], np.arange(19))
    assert labels.CLASS_NAMES[0] == "road" and labels.CLASS_NAMES[18] == "bicycle"
    assert tuple(labels.PALETTE[13]) == (0, 0, 142) and tuple(labels.PALETTE[255]) == (0, 0, 0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("synth"), n_train=6, n_val=3, height=32, width=64)


def test_synthetic_files_have_the_official_formats(synthetic):
    gt = sorted((synthetic / "gtFine" / "train").rglob("*_labelIds.png"))
    assert len(gt) == 6
    stem = gt[0].name[:-len("_gtFine_labelIds.png")]
    folder = gt[0].parent
    assert Image.open(gt[0]).mode == "L"
    assert Image.open(folder / f"{stem}_gtFine_instanceIds.png").mode == "I;16"
    assert Image.open(folder / f"{stem}_gtFine_color.png").mode == "RGBA"
    assert "objects" in json.loads((folder / f"{stem}_gtFine_polygons.json").read_text())
    names = [p.name for p in (synthetic / "leftImg8bit").rglob("*.png")]
    assert any("_000019_" in n for n in names) and any("_000019_" not in n for n in names)
    assert {p.name for p in (synthetic / "leftImg8bit" / "val").iterdir()} <= {"frankfurt", "lindau",
                                                                               "munster"}


def test_synthetic_instance_invariant_and_content(synthetic):
    seen = set()
    for path in (synthetic / "gtFine").rglob("*_labelIds.png"):
        ids = np.asarray(Image.open(path))
        inst = np.asarray(Image.open(str(path).replace("labelIds", "instanceIds"))).astype(np.int64)
        np.testing.assert_array_equal(ids, np.where(inst >= 1000, inst // 1000, inst))
        seen |= set(np.unique(ids).tolist())
        assert (inst > 1000).any()  # individual objects exist
    assert {7, 8, 11, 23, 24, 26}.issubset(seen)


def test_synthetic_is_reproducible(tmp_path):
    a = synth.render_scene(np.random.default_rng(5), 32, 64)
    b = synth.render_scene(np.random.default_rng(5), 32, 64)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)


def test_synthetic_polygons_name_the_class_they_were_drawn_as():
    # a wall-or-fence segment is drawn as one or the other: its polygon says which
    names = {label.name for label in labels.LABELS}
    drawn = set()
    for seed in range(40):
        _, ids, _, polygons = synth.render_scene(np.random.default_rng(seed), 32, 64)
        found = {obj["label"] for obj in polygons["objects"]}
        # crowd regions are "<class>group", as in Cityscapes' own polygon files
        assert {name[:-len("group")] if name.endswith("group") else name for name in found} <= names
        for name, label_id in (("fence", 13), ("wall", 12)):
            if (ids == label_id).any():
                assert name in found, (seed, name)
                drawn.add(name)
    assert drawn == {"fence", "wall"}  # both kinds came up


def test_synthetic_colours_do_not_determine_the_class():
    # the same RGB colour appears under several classes: a colour lookup cannot solve the task
    image, ids, _, _ = synth.render_scene(np.random.default_rng(1), 64, 128)
    quantised = (image // 32).reshape(-1, 3)
    keys = quantised[:, 0] * 64 + quantised[:, 1] * 8 + quantised[:, 2]
    classes = labels.ID2TRAIN[ids.ravel()]
    ambiguous = sum(len(np.unique(classes[keys == k])) > 1 for k in np.unique(keys))
    assert ambiguous >= 5


def test_reader_maps_ids_and_voids(tmp_path):
    ids = np.array([[7, 8, 0, 26], [26, 1, 33, 9]], np.uint8)
    ids = np.kron(ids, np.ones((4, 4), np.uint8))
    write_frame(tmp_path, "train", "aachen", "aachen_000001_000294", ids)
    sample = Cityscapes(tmp_path, "train")[0]
    assert sample["image"].shape == (3, 8, 16) and sample["image"].dtype == np.float32
    assert sample["image"].max() <= 1.0 and sample["name"] == "aachen_000001_000294"
    np.testing.assert_array_equal(sample["target"], labels.ID2TRAIN[ids])
    assert sample["target"][0, 8] == 255 and sample["target"][4, 4] == 255  # unlabeled, ego vehicle


def test_majority_vote_downsampling_by_hand():
    t = np.array([[0, 0, 5, 5],
                  [0, 1, 5, 6],
                  [2, 2, 3, 4],
                  [2, 255, 7, 8]], np.uint8)
    # cells: {0,0,0,1} -> 0 (3/4); {5,5,5,6} -> 5; {2,2,2,255} -> 2; {3,4,7,8} -> void (1/4 ≤ half)
    np.testing.assert_array_equal(downsample_labels(t, 2), [[0, 5], [2, 255]])
    tie = np.array([[1, 1], [2, 2]], np.uint8)
    assert downsample_labels(tie, 2)[0, 0] == 255  # exactly half is not a majority


@pytest.mark.parametrize("ids,factor,message", [
    # 300 would be counted as id 44 of the next cell: refused, not miscounted
    (np.array([[0, 0], [300, 0]], np.int32), 2, r"ids must lie in 0\.\.255, got 0\.\.300"),
    (np.array([[0, -1], [0, 0]], np.int32), 2, r"ids must lie in 0\.\.255, got -1\.\.0"),
    (np.zeros((2, 2), np.float32), 2, "integer ids, got float32"),
    (np.zeros((1, 2, 2), np.uint8), 2, r"\(H, W\) map .* shape \(1, 2, 2\)"),
    (np.zeros((2, 2), np.uint8), 0, "factor must be a positive integer, got 0"),
    (np.zeros((2, 2), np.uint8), 1.5, "factor must be a positive integer, got 1.5"),
])
def test_majority_vote_downsampling_refuses_what_it_cannot_count(ids, factor, message):
    with pytest.raises(ValueError, match=message):
        downsample_labels(ids, factor)


def test_majority_vote_downsampling_takes_wider_integer_maps_in_range():
    t = np.array([[7, 7], [7, 255]], np.int64)
    np.testing.assert_array_equal(downsample_labels(t, 2), [[7]])
    for factor in (1, 2):  # uint8 whatever the factor
        assert downsample_labels(t, factor).dtype == np.uint8


def test_a_one_bit_label_file_is_named_as_such(tmp_path):
    from minifrrn.data import read_label_ids
    path = tmp_path / "x_gtFine_labelIds.png"
    Image.new("1", (4, 4)).save(path)
    with pytest.raises(ValueError, match=r"mode '1' image \(1 channel\): .*mode 'L'"):
        read_label_ids(path)


def test_translation_keeps_image_and_label_aligned():
    H, W = 12, 16
    label = (np.arange(H * W) % 19).reshape(H, W).astype(np.uint8)
    image = np.repeat(label[..., None].astype(np.float32) / 18.0, 3, axis=2)  # label-coded image
    img2, lab2 = translate(image, label, 3, -2)
    valid = lab2 != 255
    np.testing.assert_allclose(img2[..., 0][valid] * 18.0, lab2[valid], atol=1e-5)
    assert not valid[:3].any() and not valid[:, -2:].any() and valid[3:, :-2].all()


def test_gamma_formula():
    z = 0.03
    assert abs(gamma_from(z) - np.log(0.5 + z / np.sqrt(2)) / np.log(0.5 - z / np.sqrt(2))) < 1e-12
    assert gamma_from(0.0) == 1.0


def test_augmented_samples_are_deterministic_per_epoch(synthetic):
    ds = Cityscapes(synthetic, "train", augment=True, max_shift=5, seed=3)
    a, b, c = ds.load(1, epoch=2), ds.load(1, epoch=2), ds.load(1, epoch=3)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["target"], c["target"]) or not np.array_equal(a["image"], c["image"])


@pytest.mark.parametrize("augment", [False, True])
def test_cached_frames_give_the_samples_of_fresh_reads(synthetic, augment):
    cached = Cityscapes(synthetic, "train", downsample=2, augment=augment, max_shift=3)
    fresh = Cityscapes(synthetic, "train", downsample=2, augment=augment, max_shift=3, cache_mb=0)
    for epoch in (0, 1, 2):  # the first epoch fills the cache, the later ones read it
        for i in range(len(cached)):
            a, b = cached.load(i, epoch), fresh.load(i, epoch)
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["target"], b["target"])
            assert a["name"] == b["name"]
    assert len(cached._cache) == len(cached) and not fresh._cache


def test_the_cache_keeps_to_its_budget_and_hands_out_copies(synthetic):
    one_frame = 16 * 32 * 4  # a 16x32 frame at x2: RGB and trainIds, one byte each
    ds = Cityscapes(synthetic, "train", downsample=2, cache_mb=2.5 * one_frame / 2 ** 20)
    samples = [ds.load(i) for i in range(len(ds))]
    assert len(ds._cache) == 2  # two frames fit, the third does not
    samples[0]["target"][:] = 0  # the caller's copy: the cached frame is untouched
    assert not np.array_equal(ds.load(0)["target"], samples[0]["target"])
    with pytest.raises(ValueError, match="read-only"):
        ds._cache[0][1][0, 0] = 1
    with pytest.raises(ValueError, match="cache_mb must be >= 0"):
        Cityscapes(synthetic, "train", cache_mb=-1)


def test_loader_yields_every_sample_once_and_stops_its_threads(synthetic):
    ds = Cityscapes(synthetic, "train", downsample=2)
    before = threading.active_count()
    with DataLoader(ds, batch_size=2, num_workers=2, seed=1) as loader:
        names = [n for batch in loader for n in batch["name"]]
        assert sorted(names) == sorted(f.name for f in ds.frames)
        batch = next(iter(loader))
        assert batch["image"].shape == (2, 3, 16, 32) and batch["target"].dtype == np.uint8
        second = [n for b in loader.batches(1) for n in b["name"]]
        assert sorted(second) == sorted(names) and second != names
        resumed = [n for b in loader.batches(1, start=1) for n in b["name"]]
        assert resumed == second[2:]
    assert threading.active_count() <= before


def test_bad_input_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Cityscapes(tmp_path / "nowhere")
    ids = np.full((8, 8), 7, np.uint8)
    write_frame(tmp_path, "train", "aachen", "aachen_000000_000019", ids)
    with pytest.raises(FileNotFoundError, match="val"):
        Cityscapes(tmp_path, "val")
    with pytest.raises(ValueError, match="test"):
        Cityscapes(tmp_path, "test")
    label = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(label)
    with pytest.raises(ValueError, match="aachen_000000_000019_gtFine_labelIds.png.*channel"):
        Cityscapes(tmp_path)[0]
    Image.fromarray(np.full((8, 8), 40, np.uint8)).save(label)
    with pytest.raises(ValueError, match="label id 40, outside 0..33: .* not trainIds"):
        Cityscapes(tmp_path)[0]
    label.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="not a readable image"):
        Cityscapes(tmp_path)[0]
    label.unlink()
    with pytest.raises(FileNotFoundError, match="has no labels"):
        Cityscapes(tmp_path)


def test_write_prediction_uses_label_ids(tmp_path):
    train_ids = np.array([[0, 13], [18, 10]])
    write_prediction(tmp_path / "p.png", train_ids)
    img = Image.open(tmp_path / "p.png")
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), [[7, 26], [33, 23]])
    with pytest.raises(ValueError, match="trainIds 0..18"):
        write_prediction(tmp_path / "q.png", np.array([[255]]))


def test_a_write_that_dies_midway_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    # a predict killed while writing must not leave a truncated PNG that eval then fails on
    from minifrrn.viz import plot_curves
    from minifrrn.data.predictions import write_overlay
    image = np.random.default_rng(0).integers(0, 256, (2, 2, 3), dtype=np.uint8)
    write_prediction(tmp_path / "p.png", np.array([[0, 13], [18, 10]]))
    write_overlay(tmp_path / "o.png", image, np.array([[0, 13], [18, 10]]))
    plot_curves(tmp_path / "c.png", np.arange(3), np.array([3.0, 2.0, 1.0]))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def dies_midway(self, fp, format=None, **params):
        fp.write(b"\x89PNG\r\n")  # the start of a file, then the process is gone
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        write_prediction(tmp_path / "p.png", np.array([[1, 1], [1, 1]]))
    with pytest.raises(KeyboardInterrupt):
        write_overlay(tmp_path / "o.png", image, np.array([[1, 1], [1, 1]]))
    from matplotlib.figure import Figure
    monkeypatch.setattr(Figure, "savefig", lambda self, fp, **kw: dies_midway(self, fp))
    with pytest.raises(KeyboardInterrupt):
        plot_curves(tmp_path / "c.png", np.arange(2), np.array([5.0, 4.0]))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left


def test_a_prediction_is_never_written_lossily(tmp_path):
    with pytest.raises(ValueError, match=r"not a \.png.*losslessly"):
        write_prediction(tmp_path / "p.jpg", np.array([[0, 13], [18, 10]]))
    assert not list(tmp_path.iterdir())


def test_processes_generating_at_once_keep_the_first_complete_set(tmp_path, monkeypatch):
    # this process draws its set while another one finishes the same set first: the first set,
    # which the other may already be reading, stays in place; this process's copy is dropped
    small = dict(n_train=2, n_val=1, height=16, width=32)
    root, real_generate, first = tmp_path / "s", synth.generate, {}

    def generate_while_another_finishes(folder, **settings):
        real_generate(folder, **settings)
        if not first:
            monkeypatch.setattr(synth, "generate", real_generate)
            first["root"] = synth.ensure_synthetic(root, **small)  # the other process
            first["inode"] = root.stat().st_ino

    monkeypatch.setattr(synth, "generate", generate_while_another_finishes)
    assert synth.ensure_synthetic(root, **small) == root
    assert root.stat().st_ino == first["inode"]  # not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no copy or leftover beside it


def test_an_incomplete_or_other_set_is_replaced(tmp_path):
    root = tmp_path / "s"
    synth.ensure_synthetic(root, n_train=1, n_val=1, height=16, width=32, seed=1)
    synth.ensure_synthetic(root, n_train=2, n_val=1, height=16, width=32, seed=2)
    assert json.loads((root / "COMPLETE.json").read_text())["seed"] == 2
    assert len(list((root / "leftImg8bit" / "train").rglob("*.png"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_synth_refuses_a_folder_that_holds_a_data_set(tmp_path):
    synth.generate(tmp_path / "d", n_train=2, n_val=1, height=16, width=32)
    before = sorted(str(p) for p in (tmp_path / "d").rglob("*"))
    with pytest.raises(FileExistsError, match="already holds a data set .leftImg8bit/.: choose a new"):
        synth.generate(tmp_path / "d", n_train=1, n_val=1, height=32, width=64)
    assert sorted(str(p) for p in (tmp_path / "d").rglob("*")) == before


def test_a_batch_of_frames_of_different_sizes_names_them():
    from minifrrn.data.loader import collate
    samples = [{"image": np.zeros((3, 8, 16), np.float32), "target": np.zeros((8, 16), np.uint8),
                "name": name} for name in ("a_000000_000019", "b_000000_000019")]
    samples[1]["image"] = np.zeros((3, 16, 32), np.float32)
    with pytest.raises(ValueError, match="b_000000_000019 16x32: every frame of a data set must"):
        collate(samples)


def test_ensure_synthetic_generates_once(tmp_path):
    root = synth.ensure_synthetic(tmp_path / "s", n_train=2, n_val=1, height=16, width=32)
    assert (root / "COMPLETE.json").exists()
    stamp = (root / "COMPLETE.json").stat().st_mtime_ns
    assert synth.ensure_synthetic(tmp_path / "s", n_train=2, n_val=1, height=16, width=32) == root
    assert (root / "COMPLETE.json").stat().st_mtime_ns == stamp


def test_prediction_writers_refuse_maps_they_would_misread(tmp_path):
    from minifrrn.data import write_overlay
    from minifrrn.data.predictions import train_to_label_ids
    with pytest.raises(ValueError, match="one \\(H, W\\) map, got shape \\(1, 8, 8\\)"):
        write_prediction(tmp_path / "p.png", np.zeros((1, 8, 8), int))
    with pytest.raises(ValueError, match="image is 8x8 but the prediction is 4x4: resize"):
        write_overlay(tmp_path / "o.png", np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="trainIds 0..18, got -1"):
        train_to_label_ids(np.array([[-1, 5]]))
    with pytest.raises(TypeError, match="integer trainIds, got float64"):
        train_to_label_ids(np.array([[1.7]]))
    assert not list(tmp_path.iterdir())


def test_cityscapes_takes_numpy_integers_and_refuses_bools_and_negative_shifts(tmp_path):
    root = synth.generate(tmp_path / "d", n_train=1, n_val=1, height=32, width=64, seed=3)
    assert Cityscapes(root, downsample=np.int64(2))[0]["image"].shape == (3, 16, 32)
    with pytest.raises(ValueError, match="downsample must be a positive integer, got True"):
        Cityscapes(root, downsample=True)
    with pytest.raises(ValueError, match="max_shift must be >= 0 pixels"):
        Cityscapes(root, augment=True, max_shift=-5)


def test_an_image_too_large_to_decode_safely_is_a_one_line_error(tmp_path, monkeypatch):
    from minifrrn.data import read_image
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels: over twice the limit
    with pytest.raises(ValueError, match="big.png is not a readable image \\(Image size"):
        read_image(tmp_path / "big.png")


def test_a_dark_16_bit_grey_image_is_scaled_from_its_16_bit_range(tmp_path):
    # 200 of 65535 is nearly black: read as 1, not as 200 of 255 (Pillow before 10.3 opened such a
    # PNG as 32-bit "I", whose range read_image can only guess from its largest value)
    from minifrrn.data import read_image
    Image.fromarray(np.full((4, 4), 200, np.uint16)).save(tmp_path / "dark.png")
    np.testing.assert_array_equal(read_image(tmp_path / "dark.png")[0, 0], [1, 1, 1])


def test_collate_of_no_samples_says_so():
    from minifrrn.data.loader import collate
    with pytest.raises(ValueError, match="collate: no samples"):
        collate([])


def test_the_default_translation_range_follows_the_downsampled_width(tmp_path):
    from minifrrn.data.augment import default_max_shift
    root = synth.generate(tmp_path / "d", n_train=1, n_val=1, height=64, width=128, seed=4)
    # FRRN's 30 px at 512 wide, in proportion below: not 40 px on a 64-pixel-wide image
    assert Cityscapes(root, downsample=1, augment=True).max_shift == default_max_shift(128) == 8
    assert Cityscapes(root, downsample=2, augment=True).max_shift == default_max_shift(64) == 4
    assert Cityscapes(root, downsample=2, augment=True, max_shift=0).max_shift == 0


def test_a_negative_index_is_the_same_frame_and_cache_entry(tmp_path):
    root = synth.generate(tmp_path / "d", n_train=3, n_val=1, height=32, width=64, seed=5)
    data = Cityscapes(root, augment=True)
    last, again = data.load(-1, epoch=2), data.load(2, epoch=2)
    np.testing.assert_array_equal(last["image"], again["image"])
    assert last["name"] == again["name"] and list(data._cache) == [2]
    with pytest.raises(IndexError, match="frame 3 of a split of 3 frames"):
        data[3]


def test_closing_a_loader_under_an_open_iterator_says_so(tmp_path):
    root = synth.generate(tmp_path / "d", n_train=8, n_val=1, height=32, width=64, seed=6)
    loader = DataLoader(Cityscapes(root), batch_size=1, num_workers=2, prefetch=1)
    batches = loader.batches(0)
    next(batches)
    loader.close()
    with pytest.raises(RuntimeError, match="DataLoader was closed while a batches\\(\\) iterator"):
        list(batches)
    assert len(list(loader.batches(0))) == 8  # and the loader works again afterwards
    loader.close()


def test_as_rgb_reads_integer_images_as_0_to_255_and_grey_with_one_channel():
    from minifrrn.data.predictions import as_rgb
    grey = np.array([[0, 128], [255, 300]], np.int64)
    np.testing.assert_array_equal(as_rgb(grey)[..., 0], [[0, 128], [255, 255]])
    np.testing.assert_array_equal(as_rgb(grey[None].astype(np.float32) / 255)[..., 1],
                                  [[0, 128], [255, 255]])
    assert as_rgb(np.zeros((4, 6, 1), np.uint8)).shape == (4, 6, 3)


def test_a_prediction_grid_needs_one_target_and_prediction_per_image(tmp_path):
    from minifrrn.viz import save_prediction_grid
    image, ids = np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 255)
    with pytest.raises(ValueError, match="one target and one prediction"):
        save_prediction_grid(tmp_path / "g.png", [], [], [])
    with pytest.raises(ValueError, match="got 2 images, 1 targets"):
        save_prediction_grid(tmp_path / "g.png", [image, image], [ids], [ids, ids])
    save_prediction_grid(tmp_path / "g.png", [image], [ids], [ids])  # all void: a legend still
    assert (tmp_path / "g.png").stat().st_size > 0


def test_a_killed_generations_folders_are_removed_once_a_day_old(tmp_path):
    import os
    import time
    root = tmp_path / "cache" / "set"
    root.parent.mkdir()
    dead, fresh = root.parent / "set.tmp-dead", root.parent / "set.tmp-running"
    for folder in (dead, fresh):
        (folder / "leftImg8bit").mkdir(parents=True)
    day_ago = time.time() - synth.ABANDONED_AFTER_S - 60
    os.utime(dead, (day_ago, day_ago))
    synth.ensure_synthetic(root, n_train=1, n_val=1, height=16, width=32)
    assert not dead.exists() and fresh.exists()  # another process may still be writing that one


def test_synth_removes_the_day_old_folders_of_generations_killed_in_its_output(tmp_path):
    import os
    import time
    out = tmp_path / "out"
    dead, fresh = out / ".synth-tmp-dead", out / ".synth-tmp-running"
    for folder in (dead, fresh):
        (folder / "leftImg8bit").mkdir(parents=True)
    day_ago = time.time() - synth.ABANDONED_AFTER_S - 60
    os.utime(dead, (day_ago, day_ago))
    synth.generate(out, n_train=1, n_val=1, height=16, width=32)
    assert not dead.exists() and fresh.exists()
    assert (out / "gtFine" / "val").is_dir()


def test_synth_names_the_half_set_a_generation_killed_between_its_moves_leaves(tmp_path):
    out = tmp_path / "half"
    (out / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="holds leftImg8bit/ but no gtFine/.*remove "
                                              ".*leftImg8bit and run again"):
        synth.generate(out, n_train=1, n_val=1, height=16, width=32)


@pytest.mark.parametrize("seed", [2 ** 32 + 5, -1, 1.5, True])
def test_a_seed_beyond_32_bits_is_refused_where_its_streams_would_be_another_seeds(tmp_path, seed):
    from minifrrn.training import TrainConfig
    write_frame(tmp_path / "cs", "train", "aachen", "aachen_000000_000019",
                np.zeros((16, 32), np.uint8))
    with pytest.raises(ValueError, match=r"seed must be a whole number in 0\.\.4294967295"):
        Cityscapes(tmp_path / "cs", "train", seed=seed)
    with pytest.raises(ValueError, match=r"seed must be a whole number in 0\.\.4294967295"):
        DataLoader([0, 1, 2], 2, seed=seed)
    with pytest.raises((ValueError, TypeError), match=r"seed"):
        TrainConfig(seed=seed).validate()
    assert DataLoader([0, 1, 2], 2, seed=2 ** 32 - 1).seed == 2 ** 32 - 1


def test_every_random_purpose_draws_from_a_stream_of_its_own(tmp_path, monkeypatch):
    # NumPy treats the seed words [s], [s, 0] and [s, 0, 0] as one stream: an epoch's order, a
    # frame's augmentation, the initial weights and a synthetic scene must not meet that way
    import minifrrn as mf
    streams = []
    real_default_rng = np.random.default_rng

    def recording(seed=None):
        sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        streams.append((what[0], tuple(sequence.generate_state(4))))
        return real_default_rng(seed)

    monkeypatch.setattr(np.random, "default_rng", recording)
    what = ["scenes"]
    root = synth.generate(tmp_path / "data", n_train=3, n_val=2, height=16, width=32, seed=0)
    what[0] = "weights"
    mf.models.frrn_tiny(seed=0)
    data = Cityscapes(root, "train", augment=True, seed=0)
    loader = DataLoader(data, batch_size=1, shuffle=True, seed=0)
    for epoch in range(3):
        what[0] = f"order {epoch}"
        loader.order(epoch)
        for frame in range(3):
            what[0] = f"augmentation {epoch} {frame}"
            data.load(frame, epoch)
    purposes = {}
    for purpose, state in streams:
        purposes.setdefault(state, set()).add(purpose)
    assert len(purposes) >= 5 + 1 + 3 + 9  # scenes, weights, orders, augmentations all seen
    shared = [sorted(p) for p in purposes.values() if len(p) > 1]
    assert not shared, f"draws sharing a random stream: {shared}"
