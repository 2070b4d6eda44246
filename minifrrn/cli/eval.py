"""`minifrrn eval`: the four official Cityscapes scores, for a checkpoint or a folder of PNGs."""
import json
from pathlib import Path

from ..files import atomic_write_text
from . import CLIError, check_output_file


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a training checkpoint (.npz) to predict with")
    source.add_argument("--predictions", help="a folder of label-id PNGs named <city>_<seq>_<frame>* "
                                              "(as minifrrn predict writes; *_overlay.png and "
                                              "*_color.png pictures are skipped)")
    parser.add_argument("--data", required=True, help="Cityscapes-format dataset root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--device", default="cpu", help="cpu or gpu (with --checkpoint)")
    parser.add_argument("--batch-size", type=int, default=1)


def evaluate_folder(predictions, data, split="val"):
    """Score label-id PNGs (one per ground-truth frame, matched by name) as the official script does."""
    from ..data.cityscapes import (find_frames, read_instance_ids, read_label_ids,
                                   require_instance_files)
    from ..metrics import CityscapesEvaluator
    folder = Path(predictions)
    if not folder.is_dir():
        raise CLIError(f"prediction folder {folder} does not exist")
    frames = find_frames(data, split)
    require_instance_files(frames)
    by_frame = {}
    names = {f.name for f in frames}
    for path in sorted(folder.rglob("*.png")):
        if path.name.endswith(("_overlay.png", "_color.png")):
            # the colour pictures `minifrrn predict` (overlays) and examples/predict_folder.py
            # (colour maps) write beside the label-id PNGs
            continue
        stem = "_".join(path.name.split("_")[:3])
        if stem in names:
            if stem in by_frame:
                raise CLIError(f"two predictions for frame {stem}: {by_frame[stem]} and {path}")
            by_frame[stem] = path
    evaluator = CityscapesEvaluator()
    for frame in frames:
        if frame.name not in by_frame:
            raise CLIError(f"no prediction for frame {frame.name} in {folder}")
        prediction = read_label_ids(by_frame[frame.name])
        gt = read_label_ids(frame.label_path)
        evaluator.add(prediction, gt, read_instance_ids(frame.instance_path), name=frame.name)
    return evaluator.results()


def report(results, json_path=None):
    from ..metrics import format_averages, format_table
    print(format_table(results))
    print(format_averages(results))
    if json_path:
        atomic_write_text(json_path, json.dumps(results, indent=1))


def run(args):
    if args.json:
        check_output_file(args.json, "--json")
    if args.checkpoint:
        from ..training import evaluate_checkpoint
        results = evaluate_checkpoint(args.checkpoint, args.data, args.split, device=args.device,
                                      batch_size=args.batch_size)
    else:
        results = evaluate_folder(args.predictions, args.data, args.split)
    report(results, args.json)
    return 0
