"""Training end to end: overfitting, resume equals uninterrupted, checkpoints, the CLI."""
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.cli import main
from minifrrn.data import synth
from minifrrn.models import FRRN, frrn_tiny
from minifrrn.optim import Adam
from minifrrn.training import (CheckpointError, TrainConfig, Trainer, load_checkpoint, load_model,
                               predict_scores, resize_scores, run_config, save_checkpoint)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("data"), n_train=8, n_val=2, height=32, width=64,
                          seed=1)


def config(root, out, **kw):
    base = dict(data=str(root), model="tiny", steps=4, batch_size=2, val_every=2, downsample=1,
                num_workers=1, out=str(out), final_eval=False, quiet=True, lr=2e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_overfitting_one_batch_drives_the_loss_down():
    rng = np.random.default_rng(0)
    model = frrn_tiny(num_classes=4, seed=0)
    x = mf.tensor(rng.random((2, 3, 16, 16)).astype(np.float32))
    target = np.zeros((2, 16, 16), np.int64)
    target[:, :8] = 1
    target[:, :, :5] = 2
    target[1, 10:, 10:] = 3
    opt = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(data_root, tmp_path, capsys):
    straight = Trainer(config(data_root, tmp_path / "a", steps=4))
    straight.run()
    # the same run, interrupted by Ctrl-C during its third step: it finishes that step, saves, stops
    # (quiet, as a script would run it: where it saved and how to go on is said all the same)
    first = Trainer(config(data_root, tmp_path / "b", steps=4, quiet=True))
    original, calls = first.loss_fn, []

    def interrupt_on_third_step(logits, target):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(logits, target)

    first.loss_fn = interrupt_on_third_step
    with pytest.raises(KeyboardInterrupt):
        first.run()
    # how to continue, from the command line and from Python
    said = capsys.readouterr().out
    assert f"minifrrn train --resume --out {tmp_path / 'b'}" in said
    assert f"resume=True, out={str(tmp_path / 'b')!r}" in said
    resumed = Trainer(config(data_root, tmp_path / "b", steps=4, resume=True))
    assert resumed.step == 3
    resumed.run()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)


def test_run_writes_every_artefact_and_the_checkpoint_round_trips(data_root, tmp_path):
    trainer = Trainer(config(data_root, tmp_path / "run", steps=2, final_eval=True))
    summary = trainer.run()
    for name in ("last.npz", "best.npz", "log.jsonl", "curves.png", "predictions.png",
                 "config.json", "results.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert set(summary["official"]) == {"averageScoreClasses", "averageScoreInstClasses",
                                        "averageScoreCategories", "averageScoreInstCategories"}
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_miou" in r for r in records) and any("loss" in r for r in records)
    model, meta = load_model(tmp_path / "run" / "last.npz")
    x = mf.tensor(np.random.default_rng(0).random((1, 3, 32, 64)).astype(np.float32))
    trainer.model.eval()
    with mf.no_grad():
        np.testing.assert_array_equal(model(x).data, trainer.model(x).data)
    assert meta["step"] == 2


def test_checkpoint_is_written_atomically(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"lr": 0.1}, {"model": "tiny"})
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left behind
    model_state, optim_state, meta = load_checkpoint(path)
    assert optim_state["lr"] == 0.1 and meta["model"] == "tiny"
    np.testing.assert_array_equal(model_state["w"], np.ones(3))


def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path, data_root):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(bad)
    other = tmp_path / "other.npz"
    save_checkpoint(other, frrn_tiny(num_classes=3).state_dict(), {}, {"model": "tiny",
                                                                      "num_classes": 19})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(other)


def test_a_hand_built_model_is_loaded_by_passing_it(tmp_path):
    spec = dict(encoder=[[1, 8, 2], [1, 8, 4]], decoder=[[1, 8, 2]], stem_channels=8,
                z_channels=4, head_channels=8, stem_units=1, head_units=1, num_classes=5)
    trained = FRRN(**spec)
    path = save_checkpoint(tmp_path / "custom.npz", trained.state_dict(), {}, {"model": "mine"})
    with pytest.raises(CheckpointError, match="model=") as error:
        load_model(path)
    assert "'mine'" in str(error.value)
    fresh = FRRN(**spec)  # initialised from where the random stream went on: other weights
    assert any(not np.array_equal(a, b) for a, b in zip(trained.state_dict().values(),
                                                        fresh.state_dict().values()))
    model, meta = load_model(path, model=fresh)
    assert model is fresh and not model.training and meta["model"] == "mine"
    for (name, a), (_, b) in zip(trained.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(CheckpointError, match="does not fit model FRRN"):
        load_model(path, model=FRRN(**{**spec, "num_classes": 7}))


def test_resize_scores_is_bilinear_with_half_pixel_centres():
    scores = np.array([[[[0.0, 4.0]]]])
    out = resize_scores(scores, 1, 4)
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 1.0, 3.0, 4.0])


def test_cli_train_end_to_end_and_predict(data_root, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--data", str(data_root), "--steps", "2", "--batch-size", "2",
                 "--val-every", "2", "--downsample", "1", "--out", str(out), "--quiet",
                 "--num-workers", "1"]) == 0
    assert "official scores" in capsys.readouterr().out
    image = next((data_root / "leftImg8bit" / "val").rglob("*.png"))
    assert main(["predict", "--checkpoint", str(out / "last.npz"), str(image), "--out",
                 str(tmp_path / "pred")]) == 0
    stem = image.name[:-len("_leftImg8bit.png")]
    from PIL import Image
    pred = Image.open(tmp_path / "pred" / f"{stem}_labelIds.png")
    assert pred.mode == "L" and pred.size == (64, 32)
    assert set(np.unique(np.asarray(pred))) <= set(range(7, 34))
    assert (tmp_path / "pred" / f"{stem}_overlay.png").exists()
    # for cityscapesscripts, whose results folder must hold one PNG per frame
    assert main(["predict", "--checkpoint", str(out / "last.npz"), str(image), "--out",
                 str(tmp_path / "official"), "--no-overlays"]) == 0
    assert [p.name for p in (tmp_path / "official").iterdir()] == [f"{stem}_labelIds.png"]
    # into the folder of an earlier run with overlays: they would be second predictions
    assert main(["predict", "--checkpoint", str(out / "last.npz"), str(image), "--out",
                 str(tmp_path / "pred"), "--no-overlays"]) == 2
    assert "overlays of an earlier run" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(out / "last.npz"), "--data", str(data_root)]) == 0


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/cityscapes"], "dataset folder /nonexistent/cityscapes does not exist"),
    (["--model", "frrn_c"], "unknown model 'frrn_c'"),
    (["--device", "tpu"], "device must be one of"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--milestone", "0"], "--milestone must be >= 1"),
    (["--val-frames", "0"], "--val-frames must be >= 1"),
    (["--max-shift", "-1"], "--max-shift must be >= 0"),
    (["--num-workers", "-2"], "--num-workers must be >= 0"),
    (["--cache-mb", "-1"], "--cache-mb must be >= 0"),
])
def test_cli_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_downsample_that_misfits_the_model_names_the_factors_that_fit(data_root, tmp_path,
                                                                         capsys):
    # the test frames are 32x64; frrn_tiny needs sides divisible by 8: 32x64, 16x32 and 8x16 fit
    assert main(["train", "--data", str(data_root), "--downsample", "3", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("frrn_tiny needs image sides that are positive multiples of 8, but --downsample 3 makes "
            "the 32x64 images 10x21: use --downsample 1, 2 or 4") in err
    assert not (tmp_path / "r" / "last.npz").exists()
    # a factor larger than the images: no image is downsampled to nothing before the message
    assert main(["train", "--data", str(data_root), "--downsample", "100", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2
    assert "makes the 32x64 images 0x0: use --downsample 1, 2 or 4" in capsys.readouterr().err


def test_cli_resume_with_a_checkpoint_of_another_model(data_root, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    save_checkpoint(out / "last.npz", {}, {}, {"model": "frrn_a", "step": 1})
    assert main(["train", "--data", str(data_root), "--resume", "--out", str(out), "--downsample",
                 "1", "--quiet"]) == 2
    assert "from model 'frrn_a'" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line_whose_advice_works(data_root, tmp_path, monkeypatch,
                                                                capsys):
    out = tmp_path / "oom"
    real_step = Trainer.train_step

    def step_too_large(self, batch):
        if not self.config.checkpointing:  # as an activation too large for this machine would
            np.empty(1 << 50, np.float32)  # NumPy's own out-of-memory error (4 PiB)
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", step_too_large)
    argv = ["--data", str(data_root), "--steps", "2", "--batch-size", "2", "--val-every", "2",
            "--downsample", "1", "--out", str(out), "--quiet", "--num-workers", "1",
            "--no-final-eval"]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out of memory (Unable to allocate" in err
    assert "--resume --checkpointing" in err
    # the advice, taken: the run starts again with checkpointing and finishes
    assert main(["train", "--resume", "--checkpointing", "--out", str(out), "--quiet"]) == 0
    assert load_checkpoint(out / "last.npz")[2]["step"] == 2


def test_cli_unwritable_output_folder(data_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--data", str(data_root), "--out", str(blocker / "sub"), "--quiet"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_root, tmp_path):
    trainer = Trainer(config(data_root, tmp_path / "nan", steps=4))
    original = trainer.loss_fn
    calls = []

    def poisoned(logits, target):
        calls.append(1)
        loss = original(logits, target)
        return loss * float("nan") if len(calls) == 3 else loss

    trainer.loss_fn = poisoned
    from minifrrn.training import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        trainer.run()
    _, _, meta = load_checkpoint(tmp_path / "nan" / "last.npz")
    assert meta["step"] == 2


def test_weights_that_became_nan_under_a_finite_loss_are_never_saved(data_root, tmp_path):
    # step 4's loss is finite, but its update leaves a NaN weight: the step-4 checkpoint must not
    # be written, and the message must point at step 2's, which is good
    trainer = Trainer(config(data_root, tmp_path / "nanw", steps=4))
    original_step = trainer.optimizer.step

    def poisoned_step():
        original_step()
        if trainer.optimizer.steps == 4:
            trainer.optimizer.params[-1].data[0] = np.nan

    trainer.optimizer.step = poisoned_step
    from minifrrn.training import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="weights became NaN or infinite by step 4.*"
                                               "last good checkpoint is .*last.npz"):
        trainer.run()
    model_state, _, meta = load_checkpoint(tmp_path / "nanw" / "last.npz")
    assert meta["step"] == 2 and all(np.isfinite(v).all() for v in model_state.values())


@pytest.mark.parametrize("field,value,message", [
    ("lr", float("nan"), "--lr must be a positive finite number, got nan"),
    ("lr", float("inf"), "--lr must be a positive finite number"),
    ("batch_size", 2.0, "--batch-size must be a whole number, got 2.0"),
    ("steps", None, "--steps must be a whole number, got None"),
    ("cache_mb", True, "--cache-mb must be a whole number"),
    ("seed", -1, "--seed must be >= 0, got -1")])
def test_settings_that_are_not_numbers_of_the_right_kind_are_refused_up_front(
        data_root, tmp_path, field, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Trainer(config(data_root, tmp_path / "bad", **{field: value}))
    assert not (tmp_path / "bad").exists()


def test_default_translation_range_follows_the_paper():
    from minifrrn.data.augment import default_max_shift
    assert default_max_shift(1024) == 40      # FRRN B at 512x1024
    assert default_max_shift(512) == 30       # FRRN A at 256x512
    assert default_max_shift(128) == 8        # synthetic scenes at 64x128: the same fraction as A
    assert default_max_shift(8) == 1
    assert default_max_shift(768) == 35       # halfway between A's and B's
    assert default_max_shift(2048) == 40
    shifts = [default_max_shift(width) for width in range(1, 2049)]
    assert all(a <= b for a, b in zip(shifts, shifts[1:]))  # never falls as the width grows


def test_cli_predict_names_a_folder_given_as_an_image_and_an_output_it_cannot_make(tmp_path,
                                                                                   capsys):
    # both are refused before the checkpoint (which does not exist here) is read
    folder = tmp_path / "images"
    folder.mkdir()
    assert main(["predict", "--checkpoint", str(tmp_path / "none.npz"), str(folder), "--out",
                 str(tmp_path / "out")]) == 2
    assert f"{folder} is a folder, not an image" in capsys.readouterr().err
    image = tmp_path / "a.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["predict", "--checkpoint", str(tmp_path / "none.npz"), str(image), "--out",
                 str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"output folder {blocker / 'sub'} cannot be made" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("cache_mb", [0, 1])
def test_the_frame_cache_size_reaches_both_splits(data_root, tmp_path, cache_mb):
    trainer = Trainer(config(data_root, tmp_path / "c", steps=1, cache_mb=cache_mb))
    for split in (trainer.train_set, trainer.val_set):
        split.load(0)
        assert len(split._cache) == (1 if cache_mb else 0)


def _cli_run(data_root, out, *extra):
    return main(["train", "--data", str(data_root), "--batch-size", "2", "--val-every", "2",
                 "--downsample", "1", "--lr", "1e-3", "--num-workers", "1", "--out", str(out),
                 "--quiet", "--no-final-eval", *extra])


def test_cli_resume_takes_the_runs_settings_and_refuses_other_ones(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli_run(data_root, out, "--steps", "2") == 0
    # the command the interrupt message prints names only the folder; --steps trains longer
    assert main(["train", "--resume", "--out", str(out), "--steps", "4", "--quiet",
                 "--no-final-eval"]) == 0
    saved = load_checkpoint(out / "last.npz")[2]
    assert saved["step"] == 4
    assert {k: saved["config"][k] for k in ("data", "batch_size", "lr", "val_every", "downsample")} \
        == {"data": str(data_root), "batch_size": 2, "lr": 1e-3, "val_every": 2, "downsample": 1}
    capsys.readouterr()
    # a setting that differs from the run's is refused, before any step
    assert main(["train", "--resume", "--out", str(out), "--steps", "6", "--lr", "5e-3",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was started with lr=0.001, not lr=0.005" in err and len(err.splitlines()) == 1
    assert load_checkpoint(out / "last.npz")[2]["step"] == 4


def test_a_new_run_into_a_run_folder_is_refused(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli_run(data_root, out, "--steps", "2") == 0
    log = (out / "log.jsonl").read_text()
    assert _cli_run(data_root, out, "--steps", "2") == 2
    assert "already holds a run (last.npz): continue it with --resume" in capsys.readouterr().err
    assert (out / "log.jsonl").read_text() == log  # nothing appended


def test_resume_after_a_crash_logs_each_step_once(data_root, tmp_path):
    crashing = Trainer(config(data_root, tmp_path / "c", steps=4))  # checkpoints at steps 2 and 4
    original, calls = crashing.loss_fn, []

    def crash_in_the_fourth_step(logits, target):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("power cut")
        return original(logits, target)

    crashing.loss_fn = crash_in_the_fourth_step
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.run()  # steps 1-3 logged, last.npz at step 2
    Trainer(config(data_root, tmp_path / "c", steps=4, resume=True)).run()
    logged = [json.loads(line) for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in logged if "val_miou" in r] == [2, 4]


def test_the_logged_rate_is_the_one_the_step_used(data_root, tmp_path):
    trainer = Trainer(config(data_root, tmp_path / "lr", steps=3, lr=1e-3))
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "lr" / "log.jsonl").read_text().splitlines()]
    rates = [r["lr"] for r in logged if "lr" in r]
    assert rates[0] == 1e-3  # the cosine schedule starts at the base rate
    assert rates[0] > rates[1] > rates[2] > 1e-3 * 0.02  # and only reaches its end after the last


def test_best_is_written_before_last(data_root, tmp_path):
    trainer = Trainer(config(data_root, tmp_path / "order", steps=2))
    written, save = [], trainer.save
    trainer.save = lambda name="last.npz", **kw: (written.append(name), save(name, **kw))[1]
    trainer.run()
    assert written == ["best.npz", "last.npz"]  # a crash between them leaves no best without a file


def test_checkpoints_get_the_usual_file_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.npz", {"w": np.ones(2, np.float32)}, {}, {"model": "tiny"})
        (tmp_path / "other").write_text("")
    finally:
        os.umask(umask)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == (tmp_path / "other").stat().st_mode & 0o777
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o644


def test_a_checkpoint_that_is_a_folder_or_an_array_is_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="holds a single array, not a minifrrn checkpoint"):
        load_checkpoint(tmp_path / "a.npy")
    with pytest.raises(IsADirectoryError, match=f"is a folder: give a checkpoint file in it, such "
                                                f"as {tmp_path / 'best.npz'}"):
        load_checkpoint(tmp_path)


def test_resume_from_another_folder_with_a_relative_data_path(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(data_root.parent)
    out = tmp_path / "rel"
    assert main(["train", "--data", data_root.name, "--steps", "2", "--batch-size", "2",
                 "--val-every", "2", "--downsample", "1", "--out", str(out), "--quiet",
                 "--no-final-eval", "--num-workers", "0"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--out", str(out), "--steps", "3", "--quiet",
                 "--no-final-eval"]) == 0
    saved = load_checkpoint(out / "last.npz")[2]
    assert saved["step"] == 3 and saved["config"]["data"] == str(data_root.resolve())
    assert saved["config"]["num_workers"] == 0  # a loader setting left out comes from the run


def test_resume_refuses_fewer_steps_than_done_and_lets_checkpointing_change(data_root, tmp_path,
                                                                            capsys):
    out = tmp_path / "run"
    assert _cli_run(data_root, out, "--steps", "2") == 0
    assert main(["train", "--resume", "--out", str(out), "--steps", "1", "--quiet"]) == 2
    assert "is at step 2, past --steps 1" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(out), "--steps", "3", "--checkpointing",
                 "--quiet", "--no-final-eval"]) == 0
    assert json.loads((out / "config.json").read_text())["checkpointing"] is True
    # and off again: a flag that could only be given on was copied from the run for good
    assert main(["train", "--resume", "--out", str(out), "--steps", "4", "--no-checkpointing",
                 "--quiet", "--no-final-eval"]) == 0
    assert json.loads((out / "config.json").read_text())["checkpointing"] is False


def test_a_run_stopped_before_its_first_checkpoint_is_started_again_by_resume(data_root, tmp_path):
    # killed at step 1, before the validation at step 2 saved anything: a log and a config.json
    # (of its own settings: seed 3, four steps), no checkpoint
    import dataclasses
    out = tmp_path / "early"
    out.mkdir()
    settings = dataclasses.asdict(config(data_root, out, steps=4, seed=3))
    (out / "config.json").write_text(json.dumps(settings))
    (out / "log.jsonl").write_text('{"step": 1, "loss": 9.0, "lr": 0.001}\n')
    # a new run there is refused: the folder may belong to a run still going
    with pytest.raises(FileExistsError, match="already holds a run .log.jsonl."):
        Trainer(config(data_root, out, steps=4))
    # --resume starts it again from step 0 with its own settings, and a log of its own steps
    restarted = run_config(out, quiet=True)
    assert restarted.seed == 3 and restarted.steps == 4
    Trainer(restarted).run()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert records[0]["loss"] != 9.0
    # and it is the run that never stopped
    Trainer(config(data_root, tmp_path / "whole", steps=4, seed=3)).run()
    for name, value in load_checkpoint(out / "last.npz")[0].items():
        np.testing.assert_array_equal(value, load_checkpoint(tmp_path / "whole" / "last.npz")[0][name])


def test_a_run_whose_first_save_wrote_best_but_not_last_says_how_to_go_on(data_root, tmp_path):
    out = tmp_path / "halfsave"
    Trainer(config(data_root, out, steps=2)).run()
    (out / "last.npz").unlink()  # a full disk between best.npz and last.npz at the first save
    with pytest.raises(FileExistsError, match="already holds a run .best.npz.: continue it with "
                                              "--resume"):
        Trainer(config(data_root, out, steps=2))
    with pytest.raises(FileNotFoundError, match="holds best.npz but no last.npz to resume from "
                                                ".*move best.npz away and resume, which starts "
                                                "the run again from step 0"):
        run_config(out)
    (out / "best.npz").rename(tmp_path / "best-moved.npz")
    Trainer(run_config(out)).run()  # as the message says
    assert (out / "last.npz").exists()


def test_a_bare_resume_takes_the_newest_run_even_one_without_a_checkpoint(data_root, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    Trainer(config(data_root, tmp_path / "runs" / "older", steps=2)).run()
    newer = tmp_path / "runs" / "newer"
    newer.mkdir()
    settings = json.loads((tmp_path / "runs" / "older" / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**settings, "seed": 9}))
    (newer / "log.jsonl").write_text('{"step": 1, "loss": 9.0, "lr": 0.001}\n')
    stamp = (tmp_path / "runs" / "older" / "last.npz").stat().st_mtime + 10
    os.utime(newer / "log.jsonl", (stamp, stamp))
    # the newer run, not the older one, which a bare --resume used to finish again in its place
    again = run_config()
    assert Path(again.out).name == "newer" and again.seed == 9
    (newer / "config.json").write_text("")  # and without its settings, it says so
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint and "
                                                "config.json does not hold its settings"):
        run_config()


def test_a_killed_write_leaves_no_temporary_file_behind_for_good(data_root, tmp_path):
    Trainer(config(data_root, tmp_path / "tmpfiles", steps=2)).run()
    for name in ("best.npz.k1ll3d.tmp", "last.npz.abc.tmp", "log.jsonl.x.tmp",
                 "curves.png.q8_z.tmp", "predictions.png.7fa.tmp"):
        (tmp_path / "tmpfiles" / name).write_bytes(b"half a file")
    (tmp_path / "tmpfiles" / "notes.tmp").write_text("the user's")
    (tmp_path / "tmpfiles" / "notes.txt.x.tmp").write_text("the user's too")
    Trainer(config(data_root, tmp_path / "tmpfiles", steps=3, resume=True)).run()
    assert sorted(p.name for p in (tmp_path / "tmpfiles").glob("*.tmp")) == [
        "notes.tmp", "notes.txt.x.tmp"]
    # predict, killed while writing, leaves its temporaries; the next predict of those images
    # removes them
    image = next((data_root / "leftImg8bit" / "val").rglob("*.png"))
    stem = image.name[:-len("_leftImg8bit.png")]
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in (f"{stem}_labelIds.png.a1b2.tmp", f"{stem}_overlay.png.c3.tmp", "other.png.d4.tmp",
                 f"{stem}_overlay.png.now.tmp"):
        (pred / name).write_bytes(b"half a file")
        if ".now." not in name:  # the others are two minutes old; this one may be being written
            two_minutes_ago = time.time() - 120
            os.utime(pred / name, (two_minutes_ago, two_minutes_ago))
    assert main(["predict", "--checkpoint", str(tmp_path / "tmpfiles" / "last.npz"), str(image),
                 "--out", str(pred)]) == 0
    assert sorted(p.name for p in pred.glob("*.tmp")) == sorted(
        ["other.png.d4.tmp", f"{stem}_overlay.png.now.tmp"])


def _cut_in_half(data):
    return data[:len(data) // 2]


def _bytes_changed_in_the_middle(data):  # the zip's directory and the meta still read
    middle = len(data) // 2
    return data[:middle] + bytes(64) + data[middle + 64:]


@pytest.mark.parametrize("damage", [_cut_in_half, _bytes_changed_in_the_middle])
def test_a_corrupt_best_checkpoint_is_named_when_resuming_not_after_training(data_root, tmp_path,
                                                                            damage):
    out = tmp_path / "badbest"
    Trainer(config(data_root, out, steps=2)).run()
    (out / "best.npz").write_bytes(damage((out / "best.npz").read_bytes()))
    log_before = (out / "log.jsonl").read_text()
    with pytest.raises(CheckpointError, match="best.npz is corrupt or not a checkpoint: move it "
                                              "away and resume"):
        Trainer(config(data_root, out, steps=3, resume=True))
    assert (out / "log.jsonl").read_text() == log_before  # nothing was dropped from the log


def test_a_best_checkpoint_of_another_model_is_named_when_resuming(data_root, tmp_path):
    out = tmp_path / "otherbest"
    Trainer(config(data_root, out, steps=2)).run()
    save_checkpoint(out / "best.npz", frrn_tiny(seed=0).state_dict(), meta={"model": "frrn_a"})
    with pytest.raises(CheckpointError, match="best.npz is of model 'frrn_a', not the run's "
                                              "'tiny': move it away"):
        Trainer(config(data_root, out, steps=3, resume=True))


@pytest.mark.parametrize("garbage", [b"\xa8\xff\x00garbage\n", b"42\n", b'{"step": "x"}\n',
                                     b"[1, 2]\n"])
def test_a_damaged_log_line_is_dropped_when_resuming(data_root, tmp_path, garbage):
    out = tmp_path / "damaged"
    Trainer(config(data_root, out, steps=2)).run()
    with open(out / "log.jsonl", "ab") as log:
        log.write(garbage)
    Trainer(config(data_root, out, steps=3, resume=True)).run()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]


def test_a_full_disk_while_writing_a_run_file_is_one_line_and_keeps_the_old_file(tmp_path,
                                                                                 monkeypatch):
    import errno

    from minifrrn.files import atomic_write_text
    path = tmp_path / "log.jsonl"
    path.write_text("the old log\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="^cannot write .*log.jsonl .No space left on device.; the "
                                      "log.jsonl that was there, if any, is unchanged"):
        atomic_write_text(path, "the new log\n")
    assert path.read_text() == "the old log\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]  # no temporary file left


def test_a_cut_log_line_does_not_block_resuming(data_root, tmp_path):
    Trainer(config(data_root, tmp_path / "cut", steps=2)).run()
    with open(tmp_path / "cut" / "log.jsonl", "a") as log:
        log.write('{"step": 7, "lo')  # a crash while writing
    Trainer(config(data_root, tmp_path / "cut", steps=3, resume=True)).run()
    lines = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_a_run_folder_is_refused_and_default_folders_never_collide(data_root, tmp_path,
                                                                  monkeypatch):
    Trainer(config(data_root, tmp_path / "done", steps=2)).run()
    with pytest.raises(FileExistsError, match="already holds a run .last.npz.: continue it with "
                                              "--resume"):
        Trainer(config(data_root, tmp_path / "done"))
    (tmp_path / "started").mkdir()  # a run that has not saved yet, perhaps still going
    (tmp_path / "started" / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    with pytest.raises(FileExistsError, match="already holds a run .log.jsonl."):
        Trainer(config(data_root, tmp_path / "started"))
    from minifrrn.training.trainer import _default_out
    monkeypatch.chdir(tmp_path)
    first, second = _default_out(TrainConfig()), _default_out(TrainConfig())
    assert first != second and first.is_dir() and second.is_dir()


def test_divergence_advice_is_one_that_can_be_followed(data_root, tmp_path):
    trainer = Trainer(config(data_root, tmp_path / "nan2", steps=2))
    trainer.loss_fn = lambda logits, target: F.cross_entropy(logits, target) * np.float32("nan")
    with pytest.raises(mf.training.TrainingDiverged) as info:
        trainer.run()
    message = str(info.value)
    assert "start a new run (another --out) with a lower --lr" in message
    assert "last.npz" not in message  # none was written before the first step


def test_plot_curves_takes_arrays(tmp_path):
    from minifrrn.viz import plot_curves
    plot_curves(tmp_path / "c.png", np.arange(3), np.ones(3), np.array([1, 2]), np.array([0.1, 0.2]))
    plot_curves(tmp_path / "named", np.arange(3), np.ones(3))  # as matplotlib: .png added
    assert (tmp_path / "named.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_checkpoints_meta_reads_without_its_arrays(tmp_path):
    save_checkpoint(tmp_path / "m.npz", {"w": np.ones(3, np.float32)}, {"m.0": np.zeros(3)},
                    {"model": "tiny", "step": 5})
    model_state, optimizer_state, meta = load_checkpoint(tmp_path / "m.npz", arrays=False)
    assert model_state == {} and optimizer_state == {} and meta["step"] == 5


def test_predict_scores_refuses_a_training_model_and_8_bit_images():
    from minifrrn.training import predict_scores
    model = mf.models.frrn_tiny(seed=0)
    images = np.random.default_rng(6).random((1, 3, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="training mode.*call model.eval\\(\\)"):
        predict_scores(model, images)
    assert model.training  # refused before it ran: the running statistics did not move
    model.eval()
    with pytest.raises(TypeError, match="floats in \\[0, 1\\], got uint8: divide 8-bit images"):
        predict_scores(model, (images * 255).astype(np.uint8))
    np.testing.assert_array_equal(predict_scores(model, mf.tensor(images)),
                                  predict_scores(model, images))


def test_evaluate_model_leaves_the_model_in_the_mode_it_came_in(data_root):
    from minifrrn.data import Cityscapes
    from minifrrn.training import evaluate_model
    model = mf.models.frrn_tiny(seed=0).eval()
    evaluate_model(model, Cityscapes(data_root, "val", downsample=1), limit=1)
    assert not model.training


def test_a_batch_leaving_batch_norm_one_value_per_channel_is_refused_up_front(tmp_path):
    root = synth.generate(tmp_path / "small", n_train=2, n_val=1, height=16, width=16, seed=2)
    with pytest.raises(ValueError, match="frrn_tiny: a batch of 1 at 8x8 leaves one value per "
                                         "channel at the deepest pooling \\(1/8\\).*--batch-size 2"):
        Trainer(config(root, tmp_path / "r", batch_size=1, downsample=2))
    model = mf.models.frrn_tiny(seed=0)
    with pytest.raises(ValueError, match="batch of 1 at 8x8 leaves one value per channel"):
        model(mf.tensor(np.zeros((1, 3, 8, 8), np.float32)))
    assert model.eval()(mf.tensor(np.zeros((1, 3, 8, 8), np.float32))).shape == (1, 19, 8, 8)


def test_a_resumed_run_logs_one_final_evaluation(data_root, tmp_path):
    Trainer(config(data_root, tmp_path / "fe", steps=2, final_eval=True)).run()
    Trainer(config(data_root, tmp_path / "fe", steps=4, final_eval=True, resume=True)).run()
    records = [json.loads(line) for line in (tmp_path / "fe" / "log.jsonl").read_text().splitlines()]
    finals = [r["step"] for r in records if "averageScoreClasses" in r]
    assert finals == [4]  # the step-2 evaluation of the run as it was is gone


def test_a_checkpoint_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist; create it first"):
        save_checkpoint(tmp_path / "nowhere" / "c.npz", {"w": np.ones(2, np.float32)})


def test_numpy_numbers_as_settings_are_stored_as_json_numbers(data_root, tmp_path):
    out = tmp_path / "np"
    Trainer(config(data_root, out, steps=np.int64(2), batch_size=np.int32(2),
                   lr=np.float32(2e-3))).run()
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 2 and saved["batch_size"] == 2 and isinstance(saved["lr"], float)


def test_a_run_whose_settings_were_stored_as_whole_floats_resumes(data_root, tmp_path):
    out = tmp_path / "floats"
    Trainer(config(data_root, out, steps=2)).run()
    model_state, optimizer_state, meta = load_checkpoint(out / "last.npz")
    meta["config"].update(val_every=2.0, cache_mb=256.0)  # as a run from Python could store them
    save_checkpoint(out / "last.npz", model_state, optimizer_state, meta)
    resumed = run_config(str(out), steps=3)
    assert resumed.val_every == 2 and isinstance(resumed.val_every, int)
    Trainer(resumed).run()


def test_a_root_given_one_level_too_deep_is_named_and_leaves_no_run_folder(data_root, tmp_path,
                                                                         capsys):
    out = tmp_path / "deep"
    assert main(["train", "--data", str(data_root / "leftImg8bit"), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the dataset root is the folder holding leftImg8bit/ and gtFine/, here probably " \
           f"{data_root}" in err
    assert not out.exists()


def test_ctrl_c_while_a_run_sets_up_is_one_line(data_root, tmp_path, monkeypatch, capsys):
    # before the loop (drawing the synthetic scenes, say) no resume advice can be given, but the
    # command still says it was interrupted
    def interrupted(self, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_set_up", interrupted)
    assert main(["train", "--data", str(data_root), "--model", "tiny", "--out",
                 str(tmp_path / "setup"), "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == "minifrrn train: interrupted"


def test_a_full_disk_at_a_checkpoint_is_one_line_from_the_command(data_root, tmp_path, monkeypatch,
                                                                 capsys):
    import errno

    from minifrrn.training import checkpoint

    def full(handle, **arrays):  # the checkpoint at the step-2 validation meets a full disk
        handle.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full)
    out = tmp_path / "full"
    assert main(["train", "--data", str(data_root), "--model", "tiny", "--downsample", "1",
                 "--batch-size", "2", "--steps", "2", "--val-every", "2", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"minifrrn train: error: cannot write {out / 'best.npz'} (No space left on "
                   f"device); the best.npz that was there, if any, is unchanged: free some space, "
                   f"then continue with --resume")
    assert not list(out.glob("*.tmp"))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]  # the steps it took are logged


def test_a_float64_model_predicts_and_comes_back_from_its_checkpoint_as_float64(tmp_path):
    model = frrn_tiny(seed=0).astype(np.float64).eval()
    images = np.random.default_rng(2).random((1, 3, 32, 64))
    scores = predict_scores(model, images)
    assert scores.dtype == np.float64
    save_checkpoint(tmp_path / "f64.npz", model.state_dict(), meta={"model": "tiny"})
    loaded, _ = load_model(tmp_path / "f64.npz")
    assert all(p.dtype == np.float64 for p in loaded.parameters())
    np.testing.assert_array_equal(predict_scores(loaded, images), scores)
    # float32 images go to a float64 model too, and float64 images to a float32 one
    assert predict_scores(model, images.astype(np.float32)).dtype == np.float64
    assert predict_scores(frrn_tiny(seed=0).eval(), images).dtype == np.float32


def test_a_run_stopped_before_its_first_log_line_is_started_again_by_resume(data_root, tmp_path):
    # stopped right after it claimed its folder (config.json written, nothing else)
    out = tmp_path / "claimed"
    Trainer(config(data_root, out, steps=2, seed=4))  # set up, never run
    assert [p.name for p in out.iterdir()] == ["config.json"]
    with pytest.raises(FileExistsError, match="already holds a run .config.json."):
        Trainer(config(data_root, out, steps=2))  # another run started into it is refused
    again = run_config(out, quiet=True)
    assert again.seed == 4
    Trainer(again).run()
    assert (out / "last.npz").exists()


def test_a_run_whose_setup_fails_leaves_no_claim_behind(data_root, tmp_path):
    # the images do not fit the model at this downsampling: found after the folder was claimed
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match="--downsample 7"):
        Trainer(config(data_root, out, downsample=7))
    assert not out.exists()  # a corrected command can use the same --out
    Trainer(config(data_root, out, steps=2)).run()


def test_a_folder_is_claimed_once_also_where_files_cannot_be_hard_linked(tmp_path, monkeypatch):
    import errno

    from minifrrn import files

    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_links)
    files.atomic_write_text(tmp_path / "config.json", "first", exclusive=True)
    with pytest.raises(FileExistsError):
        files.atomic_write_text(tmp_path / "config.json", "second", exclusive=True)
    assert (tmp_path / "config.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left


def test_a_best_checkpoint_of_other_shapes_is_named_when_resuming(data_root, tmp_path):
    out = tmp_path / "othershapes"
    Trainer(config(data_root, out, steps=2)).run()
    state = load_checkpoint(out / "best.npz")[0]
    name = next(iter(state))
    state[name] = state[name][:1]
    save_checkpoint(out / "best.npz", state, meta={"model": "tiny"})
    with pytest.raises(CheckpointError, match="best.npz does not hold the weights of the run's "
                                              "model"):
        Trainer(config(data_root, out, steps=3, resume=True))


def test_a_full_disk_while_drawing_the_run_figures_is_one_line(data_root, tmp_path, monkeypatch,
                                                               capsys):
    import errno

    from minifrrn import viz

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(viz, "plot_curves", full)
    out = tmp_path / "figs"
    assert main(["train", "--data", str(data_root), "--model", "tiny", "--downsample", "1",
                 "--batch-size", "2", "--steps", "2", "--val-every", "2", "--out", str(out),
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"minifrrn train: error: cannot write {out / 'curves.png'} (No space left on device); the "
        f"run's checkpoints are unchanged: free some space, then continue with --resume")


def test_resuming_into_a_folder_that_cannot_be_written_says_what_to_do(data_root, tmp_path,
                                                                       monkeypatch):
    import tempfile as tempfile_module
    out = tmp_path / "ro"
    Trainer(config(data_root, out, steps=2)).run()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile_module, "mkstemp", read_only)
    with pytest.raises(PermissionError, match="is not writable .Permission denied.: make it "
                                              "writable to resume the run there"):
        Trainer(config(data_root, out, steps=3, resume=True))
    with pytest.raises(PermissionError, match="choose another with --out"):
        Trainer(config(data_root, tmp_path / "new", steps=3))
