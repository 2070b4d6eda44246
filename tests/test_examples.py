"""The scripts in examples/ run, at a tiny size, and do what their docstrings promise.

Each script is loaded from its file (examples/ is not a package) and its ``main(argv)`` called in
this process, with the small flags the scripts offer for this purpose.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import write_frame
from PIL import Image

import minifrrn as mf
from minifrrn.data.labels import ID_PALETTE, PALETTE, TRAIN2ID
from minifrrn.models import frrn_tiny
from minifrrn.training import load_checkpoint, save_checkpoint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_cityscapes(root, n_train=4, n_val=2, H=16, W=32):
    """Street-like label maps (sky, building, road, one car) with random pixels, in Cityscapes
    layout: enough for the trainer to read, train, validate and score."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("val", n_val)):
        for i in range(count):
            labels = np.full((H, W), 11, np.uint8)          # building
            labels[: H // 4] = 23                             # sky
            labels[H // 2:] = 7                               # road
            y, x = rng.integers(H // 2, H - H // 4), rng.integers(0, W - W // 4)
            labels[y:y + H // 4, x:x + W // 4] = 26           # car
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            write_frame(root, split, "town", f"town_{i:06d}_000019", labels, image=image)
    return root


def assert_one_line_error(capsys, call, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err


# --- train_cityscapes_gpu.py --------------------------------------------------------------------

def test_train_example_uses_the_papers_recipe():
    train = load_example("train_cityscapes_gpu")
    parser = train.build_parser()
    a = train.make_config(parser.parse_args(["--data", "root", "--model", "frrn_a"]))
    b = train.make_config(parser.parse_args(["--data", "root", "--model", "frrn_b"]))
    for config in (a, b):
        assert (config.device, config.batch_size, config.lr, config.loss) == (
            "gpu", 3, 1e-3, "bootstrapped")
        assert (config.schedule, config.milestone, config.val_every) == ("step", 45_000, 500)
    assert (a.downsample, a.max_shift) == (4, 30)      # 256x512, +-30 px
    assert (b.downsample, b.max_shift) == (2, 40)      # 512x1024, +-40 px
    # the train split cached whole at x4 (~1.5 GB); at x2 (~6 GB) only on request
    assert (a.cache_mb, b.cache_mb, a.num_workers) == (2048, 256, 8)
    c = train.make_config(parser.parse_args(["--data", "root", "--model", "frrn_b", "--cache-mb",
                                             "7000"]))
    assert c.cache_mb == 7000
    # a shift is in pixels at network resolution: the paper's holds at the paper's downsampling
    # only, elsewhere the data set's width-based default (None) applies
    d = train.make_config(parser.parse_args(["--data", "root", "--model", "frrn_b",
                                             "--downsample", "4"]))
    assert (d.downsample, d.max_shift) == (4, None)
    assert train.make_config(parser.parse_args(["--data", "root", "--model", "frrn_b",
                                                "--downsample", "2"])).max_shift == 40


def test_train_example_reports_a_bad_frame_met_in_training_in_one_line(tmp_path, capsys):
    train = load_example("train_cityscapes_gpu")
    root = write_tiny_cityscapes(tmp_path / "cityscapes")
    frames = sorted((root / "leftImg8bit" / "train").rglob("*.png"))
    frames[-1].write_bytes(frames[-1].read_bytes()[:100])  # read only when its batch comes
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(root), "--model", "tiny", "--device", "cpu", "--downsample", "1",
                    "--batch-size", "2", "--steps", "6", "--val-every", "6", "--num-workers", "0",
                    "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "is not a readable image" in err


def test_train_example_reports_running_out_of_memory_in_one_line(tmp_path, capsys, monkeypatch):
    train = load_example("train_cityscapes_gpu")
    from minifrrn.training import Trainer

    def out_of_memory(self, batch):  # CuPy's error is a MemoryError with the size in its message
        raise MemoryError("Out of memory allocating 9,663,676,416 bytes")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    root = write_tiny_cityscapes(tmp_path / "cityscapes")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(root), "--model", "tiny", "--device", "cpu", "--downsample", "1",
                    "--batch-size", "2", "--steps", "2", "--num-workers", "0",
                    "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "out of memory (Out of memory allocating 9,663,676,416 bytes)" in err
    assert f"--resume --checkpointing --out {tmp_path / 'run'}" in err


def test_train_example_trains_checkpoints_and_resumes(tmp_path, capsys):
    train = load_example("train_cityscapes_gpu")
    root = write_tiny_cityscapes(tmp_path / "cityscapes")
    out = tmp_path / "run"
    args = ["--data", str(root), "--model", "tiny", "--device", "cpu", "--downsample", "1",
            "--batch-size", "2", "--val-every", "2", "--num-workers", "1", "--out", str(out)]
    summary = train.main(args + ["--steps", "2"])
    assert summary["step"] == 2
    for name in ("last.npz", "best.npz", "results.json", "log.jsonl", "curves.png"):
        assert (out / name).is_file(), name
    _, optimizer_state, meta = load_checkpoint(out / "last.npz")
    assert meta["model"] == "tiny" and meta["step"] == 2 and optimizer_state
    assert meta["config"]["schedule"] == "step" and meta["config"]["loss"] == "bootstrapped"
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["averageScoreClasses"] <= 1.0
    assert "official scores on val" in capsys.readouterr().out

    summary = train.main(args + ["--steps", "3", "--resume"])
    assert summary["step"] == 3
    assert load_checkpoint(out / "last.npz")[2]["step"] == 3
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3]

    # a run whose shift an earlier version of the script chose by another rule still resumes,
    # with its own shift
    model_state, optimizer_state, meta = load_checkpoint(out / "last.npz")
    meta["config"]["max_shift"] = 3
    save_checkpoint(out / "last.npz", model_state, optimizer_state, meta)
    assert train.main(args + ["--steps", "4", "--resume"])["step"] == 4
    assert load_checkpoint(out / "last.npz")[2]["config"]["max_shift"] == 3


def test_train_example_rejects_bad_arguments(tmp_path, capsys):
    train = load_example("train_cityscapes_gpu")
    assert_one_line_error(capsys, lambda: train.main(["--data", str(tmp_path / "missing"),
                                                      "--device", "cpu"]), "missing")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(tmp_path), "--model", "frrn_c"])
    assert exit_info.value.code == 2


# --- predict_folder.py --------------------------------------------------------------------------

@pytest.fixture
def tiny_checkpoint(tmp_path):
    """An untrained frrn_tiny saved as a checkpoint: enough to exercise the prediction path."""
    model = frrn_tiny(seed=0)
    return save_checkpoint(tmp_path / "tiny.npz", model.state_dict(),
                           meta={"model": "tiny", "num_classes": 19, "config": {"downsample": 1}})


def test_predict_example_writes_colour_maps_at_the_images_size(tmp_path, tiny_checkpoint):
    predict = load_example("predict_folder")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    # sides that are not multiples of the model's factor (8), to exercise padding and cropping
    sizes = {"street.png": (40, 56), "corner.jpg": (30, 44)}
    for name, (H, W) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions"

    written = predict.main(["--checkpoint", str(tiny_checkpoint), "--images", str(photos),
                            "--out", str(out), "--label-ids"])

    assert len(written) == 2
    expected = {f"{Path(n).stem}_{kind}.png" for n in sizes for kind in ("color", "labelIds")}
    assert {p.name for p in out.iterdir()} == expected  # no overlays, no scratch folder left
    valid_colours = {tuple(c) for c in PALETTE[:19]}
    for name, (H, W) in sizes.items():
        stem = Path(name).stem
        colour = np.asarray(Image.open(out / f"{stem}_color.png"))
        label_ids = np.asarray(Image.open(out / f"{stem}_labelIds.png"))
        assert colour.shape == (H, W, 3) and label_ids.shape == (H, W)
        assert {tuple(c) for c in colour.reshape(-1, 3)} <= valid_colours
        assert set(np.unique(label_ids)) <= set(TRAIN2ID.tolist())
        np.testing.assert_array_equal(colour, ID_PALETTE[label_ids])


def test_predict_example_rejects_a_folder_without_images(tmp_path, tiny_checkpoint, capsys):
    predict = load_example("predict_folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(capsys, lambda: predict.main([
        "--checkpoint", str(tiny_checkpoint), "--images", str(tmp_path / "empty"),
        "--out", str(tmp_path / "out")]), "no .png/.jpg images")


def test_predict_example_gives_one_line_for_paths_of_the_wrong_kind(tmp_path, tiny_checkpoint,
                                                                    capsys):
    predict = load_example("predict_folder")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "a.png")
    (tmp_path / "afile").write_text("")
    for argv, fragment in (
            (["--checkpoint", str(tmp_path), "--images", str(photos), "--out", str(tmp_path / "o")],
             "is a folder"),
            (["--checkpoint", str(tiny_checkpoint), "--images", str(photos / "a.png"),
              "--out", str(tmp_path / "o")], "--images takes a folder"),
            (["--checkpoint", str(tiny_checkpoint), "--images", str(photos),
              "--out", str(tmp_path / "afile")], "afile")):
        assert_one_line_error(capsys, lambda: predict.main(argv), fragment)


# --- custom_frru.py -----------------------------------------------------------------------------

def test_custom_frru_example_runs_and_its_gradients_check(capsys):
    custom = load_example("custom_frru")
    model = custom.main(["--height", "16", "--width", "16", "--channels", "4", "--z-channels", "2"])
    assert all(p.grad is not None for p in model.parameters())
    out = capsys.readouterr().out
    assert "logits (2, 19, 16, 16)" in out
    total = next(line for line in out.splitlines() if line.split()[0] == "total")
    assert f"{model.num_parameters():,} parameters" in total
    assert out.count("gradcheck passed (directional") == 2


def test_custom_frru_example_fails_on_a_wrong_gradient(monkeypatch):
    custom = load_example("custom_frru")
    F = mf.functional

    def forward_with_a_cut_path(self, y, z):
        # the pooled z enters as a constant: autograd misses that path, finite differences do not
        pooled = mf.tensor(F.max_pool2d(z, self.scale).data)
        y_next = self.refine(self.mix(F.concat([y, pooled], axis=1)))
        return y_next, z + F.upsample_nearest2d(self.to_residual(y_next), self.scale)

    monkeypatch.setattr(custom.ResidualPoolingFRRU, "forward", forward_with_a_cut_path)
    with pytest.raises(mf.GradcheckError):
        custom.main(["--height", "8", "--width", "8", "--channels", "2", "--z-channels", "2"])


def test_custom_frru_example_rejects_bad_sizes(capsys):
    custom = load_example("custom_frru")
    assert_one_line_error(capsys, lambda: custom.main(["--height", "10"]), "--height", "4")


def test_custom_frru_example_refuses_a_batch_norm_of_one_value(capsys):
    # batch 1 at 4x4 leaves a 1x1 map at 1/4: batch norm would fail deep inside the forward
    custom = load_example("custom_frru")
    assert_one_line_error(
        capsys, lambda: custom.main(["--height", "4", "--width", "4", "--batch-size", "1"]),
        "--batch-size 2")


# --- bench_ops.py -------------------------------------------------------------------------------

def test_bench_example_prints_a_ratio_table(capsys):
    bench = load_example("bench_ops")
    rows = bench.main(["--scale", "8", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["conv", "shape"])
    # columns: conv, shape, ms, floor ms, ratio, GFLOP/s: the ratio is the last but one
    assert lines[header].split()[-2] == "ratio"
    table = lines[header + 2:]
    assert len(table) == len(rows) == len(bench.FRRN_A_CONVS)
    for line, row in zip(table, rows):
        assert line.startswith(row["conv"])
        assert float(line.split()[-2]) == pytest.approx(row["ratio"], abs=0.01)
        assert row["ratio"] > 0


def test_bench_example_rejects_bad_arguments(capsys):
    bench = load_example("bench_ops")
    assert_one_line_error(capsys, lambda: bench.main(["--repeats", "0"]), "--repeats")


def test_predict_refuses_images_whose_outputs_would_collide(tmp_path, tiny_checkpoint):
    from minifrrn.training import predict_images
    rng = np.random.default_rng(2)
    for name in ("c1/b_leftImg8bit.png", "c1/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match="would both be written as b_labelIds.png"):
        predict_images(tiny_checkpoint, [tmp_path / "c1/b_leftImg8bit.png", tmp_path / "c1/b.png"],
                       tmp_path / "out")
    assert not (tmp_path / "out" / "b_labelIds.png").exists()


def test_predict_handles_a_three_pixel_tall_image_and_a_16_bit_grey_one(tmp_path, tiny_checkpoint):
    from minifrrn.data import read_image
    from minifrrn.training import predict_images
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (3, 5, 3), dtype=np.uint8)).save(
        tmp_path / "short.png")
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png")[0, 0], [117, 117, 117])
    predict_images(tiny_checkpoint, [tmp_path / "short.png", tmp_path / "deep.png"], tmp_path / "o")
    assert Image.open(tmp_path / "o" / "short_overlay.png").size == (5, 3)
    assert Image.open(tmp_path / "o" / "deep_overlay.png").size == (8, 8)


def test_train_example_refuses_downsample_zero(tmp_path, capsys):
    train = load_example("train_cityscapes_gpu")
    root = write_tiny_cityscapes(tmp_path / "cityscapes")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(root), "--model", "tiny", "--device", "cpu", "--downsample", "0",
                    "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "--downsample must be >= 1" in capsys.readouterr().err


def test_predict_turns_a_photo_upright_by_its_exif_orientation(tmp_path, tiny_checkpoint):
    from minifrrn.data import read_image
    from minifrrn.training import predict_images
    stored = np.random.default_rng(4).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the camera was turned; viewers rotate it 90° clockwise
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "phone.png"), np.rot90(stored, k=-1))
    Image.fromarray(stored).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(read_image(tmp_path / "plain.png"), stored)
    predict_images(tiny_checkpoint, [tmp_path / "phone.png"], tmp_path / "o")
    assert Image.open(tmp_path / "o" / "phone_overlay.png").size == (4, 6)  # upright: 4 wide


def test_predict_checks_every_image_before_it_predicts_the_first(tmp_path, tiny_checkpoint):
    from minifrrn.training import predict_images
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:60])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(ValueError, match="cut.png is not a readable image"):
        predict_images(tiny_checkpoint, [tmp_path / "good.png", tmp_path / "cut.png"], tmp_path / "o")
    halving = save_checkpoint(tmp_path / "half.npz", frrn_tiny(seed=0).state_dict(),
                              meta={"model": "tiny", "num_classes": 19, "config": {"downsample": 2}})
    with pytest.raises(ValueError, match="dot.png is 1x1: .* downsampled by 2"):
        predict_images(halving, [tmp_path / "good.png", tmp_path / "dot.png"], tmp_path / "o")
    assert not list((tmp_path / "o").iterdir())  # good.png was not predicted either time
    # one image given as a string, not a list
    assert predict_images(tiny_checkpoint, str(tmp_path / "good.png"), tmp_path / "o") == [
        tmp_path / "o" / "good_labelIds.png"]
