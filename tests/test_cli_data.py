"""`minifrrn synth` and `minifrrn eval --predictions` end to end."""
import shutil

import numpy as np
import pytest
from PIL import Image

from minifrrn.cli import main


def test_synth_then_eval_perfect_predictions(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["synth", "--out", str(root), "--train", "2", "--val", "3", "--height", "32",
                 "--width", "64"]) == 0
    preds = tmp_path / "preds"
    preds.mkdir()
    for label in (root / "gtFine" / "val").rglob("*_labelIds.png"):
        stem = label.name[:-len("_gtFine_labelIds.png")]
        shutil.copy(label, preds / f"{stem}_leftImg8bit.png")
    assert main(["eval", "--predictions", str(preds), "--data", str(root), "--json",
                 str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "IoU class 1.000" in out and (tmp_path / "r.json").exists()


def test_eval_names_a_missing_prediction(tmp_path, capsys):
    root = tmp_path / "data"
    main(["synth", "--out", str(root), "--train", "1", "--val", "2", "--height", "16", "--width", "32"])
    preds = tmp_path / "preds"
    preds.mkdir()
    labels = sorted((root / "gtFine" / "val").rglob("*_labelIds.png"))
    shutil.copy(labels[0], preds / labels[0].name)
    assert main(["eval", "--predictions", str(preds), "--data", str(root)]) == 2
    err = capsys.readouterr().err
    missing = labels[1].name[:-len("_gtFine_labelIds.png")]
    assert f"no prediction for frame {missing}" in err


def test_eval_rejects_predictions_of_the_wrong_size(tmp_path, capsys):
    root = tmp_path / "data"
    main(["synth", "--out", str(root), "--train", "1", "--val", "1", "--height", "16", "--width", "32"])
    label = next((root / "gtFine" / "val").rglob("*_labelIds.png"))
    preds = tmp_path / "preds"
    preds.mkdir()
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(preds / label.name)
    assert main(["eval", "--predictions", str(preds), "--data", str(root)]) == 2
    assert "full resolution" in capsys.readouterr().err


def test_eval_missing_dataset_exits_2(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    assert main(["eval", "--predictions", str(tmp_path / "p"), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_refuses_a_batch_size_below_one_before_loading_anything(tmp_path, capsys):
    # the checkpoint does not even exist: the batch size is checked first
    assert main(["eval", "--checkpoint", str(tmp_path / "none.npz"), "--data", str(tmp_path),
                 "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size must be an integer >= 1, got 0" in err and len(err.splitlines()) == 1


def test_evaluate_model_checks_its_counts_before_any_work():
    from minifrrn.training.trainer import evaluate_model
    with pytest.raises(ValueError, match="--batch-size must be an integer >= 1, got 0"):
        evaluate_model(None, None, batch_size=0)
    with pytest.raises(ValueError, match="limit must be >= 1 frame"):
        evaluate_model(None, None, limit=0)


def test_eval_json_into_a_missing_folder_is_refused_first(tmp_path, capsys):
    # neither the predictions nor the dataset exist: the output path is checked before them
    target = tmp_path / "missing" / "r.json"
    assert main(["eval", "--predictions", str(tmp_path / "p"), "--data", str(tmp_path / "d"),
                 "--json", str(target)]) == 2
    assert f"folder {target.parent} does not exist" in capsys.readouterr().err


def test_synth_into_a_path_under_a_file_names_the_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["synth", "--out", str(blocker / "data"), "--train", "1", "--val", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"output folder {blocker / 'data'} cannot be made" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("source", ["--predictions", "--checkpoint"])
def test_eval_refuses_frames_without_instance_ids_before_any_work(tmp_path, capsys, source):
    # the official script needs instanceIds next to every labelIds file for its iIoU scores
    root = tmp_path / "data"
    main(["synth", "--out", str(root), "--train", "1", "--val", "3", "--height", "16", "--width", "32"])
    instance_files = sorted((root / "gtFine" / "val").rglob("*_instanceIds.png"))
    instance_files[1].unlink()
    # an empty prediction folder, a checkpoint that does not exist: the instance files come first
    (tmp_path / "nothing").mkdir()
    target = tmp_path / ("nothing" if source == "--predictions" else "none.npz")
    assert main(["eval", source, str(target), "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"1 of 3 frames have no instanceIds file (the first: {instance_files[1]})" in err
    assert len(err.splitlines()) == 1


def test_eval_scores_the_folder_predict_writes(tmp_path, capsys):
    # predict writes <stem>_labelIds.png and <stem>_overlay.png, examples/predict_folder.py also
    # <stem>_color.png: eval reads the label ids only
    root = tmp_path / "data"
    main(["synth", "--out", str(root), "--train", "1", "--val", "2", "--height", "16", "--width", "32"])
    preds = tmp_path / "preds"
    preds.mkdir()
    for label in (root / "gtFine" / "val").rglob("*_labelIds.png"):
        stem = label.name[:-len("_gtFine_labelIds.png")]
        shutil.copy(label, preds / f"{stem}_labelIds.png")
        Image.new("RGB", (32, 16), (255, 0, 0)).save(preds / f"{stem}_overlay.png")
        Image.new("RGB", (32, 16), (0, 255, 0)).save(preds / f"{stem}_color.png")
    capsys.readouterr()
    assert main(["eval", "--predictions", str(preds), "--data", str(root)]) == 0
    assert "IoU class 1.000" in capsys.readouterr().out


def test_an_interrupted_synth_leaves_no_half_written_set(tmp_path, monkeypatch):
    from minifrrn.data import synth
    drawn = []
    real = synth.render_scene

    def interrupted(rng, height, width):
        if len(drawn) == 3:
            raise KeyboardInterrupt
        drawn.append(1)
        return real(rng, height, width)

    monkeypatch.setattr(synth, "render_scene", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "s", n_train=4, n_val=2, height=16, width=32)
    assert list((tmp_path / "s").iterdir()) == []  # and a rerun is accepted
    monkeypatch.setattr(synth, "render_scene", real)
    synth.generate(tmp_path / "s", n_train=1, n_val=1, height=16, width=32)
    assert len(list((tmp_path / "s").rglob("*_leftImg8bit.png"))) == 2


@pytest.mark.parametrize("argv,message", [
    (["--height", "100000", "--width", "100000"], "at most 4096 pixels a side"),
    (["--seed", "-1"], "the seed must be a whole number in 0..4294967295, got -1"),
    (["--seed", str(2 ** 32 + 5)], "the seed must be a whole number in 0..4294967295")])
def test_synth_refuses_sizes_and_seeds_before_making_the_folder(tmp_path, capsys, argv, message):
    assert main(["synth", "--out", str(tmp_path / "s")] + argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_ctrl_c_in_any_command_is_one_line_and_130(monkeypatch, capsys):
    from minifrrn.cli import synth as synth_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_command, "run", interrupted)
    assert main(["synth", "--out", "unused"]) == 130
    assert capsys.readouterr().err.strip() == "minifrrn synth: interrupted"


def test_ctrl_c_while_the_commands_load_is_one_line_and_130(monkeypatch, capsys):
    from minifrrn import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["train"]) == 130
    assert capsys.readouterr().err.strip() == "minifrrn: interrupted"


@pytest.mark.parametrize("argv, fix", [
    (["eval", "--checkpoint", "c.npz", "--data", "d", "--batch-size", "4"],
     "use a smaller --batch-size"),
    (["eval", "--checkpoint", "c.npz", "--data", "d", "--device", "gpu"],
     "the frames do not fit this GPU's memory even one at a time: use --device cpu"),
    (["predict", "--checkpoint", "c.npz", "--out", "o", "a.png"],
     "the images do not fit this machine's memory even one at a time"),
    (["bench", "--quick"], "this machine has too little memory for the bench's shapes"),
    (["bench", "--every-conv", "frrn_b"], "--every-conv frrn_b takes the most memory: use frrn_a, "
                                          "or leave it out"),
    (["bench", "--every-conv"], "--every-conv frrn_a takes the most memory: leave it out"),
    (["bench", "--quick", "--device", "gpu"], "this GPU has too little memory for the bench's "
                                              "shapes: use --device cpu"),
    (["train", "--checkpointing"], "start a new run into another --out with a smaller --batch-size"),
    (["train", "--batch-size", "1"], "start a new run into another --out with a larger --downsample"),
])
def test_running_out_of_memory_names_a_fix_the_command_was_not_given(argv, fix, monkeypatch,
                                                                      capsys):
    import importlib
    module = importlib.import_module(f"minifrrn.cli.{argv[0]}")

    def out_of_memory(args):
        raise MemoryError("Unable to allocate 9.00 GiB for an array")

    monkeypatch.setattr(module, "run", out_of_memory)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fix in err
    assert f"minifrrn {argv[0]}: error: out of memory (Unable to allocate 9.00 GiB" in err
    if "--checkpointing" in argv:  # it was given: no use suggesting it again
        assert "--resume --checkpointing" not in err
