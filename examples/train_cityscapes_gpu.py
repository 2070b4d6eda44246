"""Train FRRN A or FRRN B on real Cityscapes on a GPU, with the paper's recipe.

The recipe (Pohlen et al., CVPR 2017, and the authors' code):

* FRRN A at 256x512 (Cityscapes downsampled x4), FRRN B at 512x1024 (x2);
* batch 3, Adam (beta 0.9/0.999, eps 1e-8), learning rate 1e-3, then 1e-4 after 45,000 updates;
* bootstrapped cross-entropy (per image the mean of the K = H*W/16 largest pixel losses);
* random translation (+-30 px for A, +-40 px for B) and random gamma;
* validation and a snapshot every 500 updates.

Everything here goes through ``minifrrn.training.TrainConfig`` and ``Trainer``: this script only
chooses the recipe's values, so the run folder is the one ``minifrrn train`` writes (``last.npz``,
``best.npz``, ``log.jsonl``, ``curves.png``, ``predictions.png``, ``results.json``).

Run it on a Cityscapes root (the folder holding ``leftImg8bit/`` and ``gtFine/``)::

    python examples/train_cityscapes_gpu.py --data /data/cityscapes --model frrn_b --out runs/frrn_b
    python examples/train_cityscapes_gpu.py --data /data/cityscapes --model frrn_b --out runs/frrn_b \\
        --resume                    # continue from runs/frrn_b/last.npz after an interruption

A FRRN B step with batch 3 took 0.58 s and 32.5 GiB of GPU memory on an H200; ``--checkpointing``
recomputes every FRRU in backward instead of keeping its activations (27.3 GiB, 0.90 s).

A smoke test on the CPU, on any small Cityscapes-format folder (``minifrrn synth --out DIR`` writes
one)::

    python examples/train_cityscapes_gpu.py --data DIR --model tiny --device cpu --steps 20 \\
        --downsample 1 --batch-size 2 --val-every 10
"""
from __future__ import annotations

import argparse
import sys

from minifrrn.backend import GPUUnavailableError
from minifrrn.metrics import format_averages
from minifrrn.training import TrainConfig, Trainer, TrainingDiverged, run_config

# The paper's per-model choices. "tiny" is minifrrn's CPU-sized FRRN, here only to smoke-test the
# script: it has no published recipe, so it keeps the trainer's defaults for resolution and shifts.
# A shift is in pixels at the network's resolution: it holds at the recipe's downsampling only.
RECIPES = {
    "frrn_a": {"downsample": 4, "max_shift": 30, "cache_mb": 2048},   # 256x512
    "frrn_b": {"downsample": 2, "max_shift": 40, "cache_mb": 256},    # 512x1024
    "tiny": {"downsample": 4, "max_shift": None, "cache_mb": 256},
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="train_cityscapes_gpu.py",
        description="Train FRRN A or B on Cityscapes with the paper's recipe.")
    parser.add_argument("--data", required=True,
                        help="Cityscapes root folder (with leftImg8bit/ and gtFine/)")
    parser.add_argument("--model", choices=sorted(RECIPES), default="frrn_a",
                        help="frrn_a (256x512) or frrn_b (512x1024); tiny for smoke tests")
    parser.add_argument("--device", default="gpu", help="gpu (default) or cpu")
    parser.add_argument("--steps", type=int, default=60_000,
                        help="optimiser updates (the learning rate drops x0.1 after 45,000)")
    parser.add_argument("--out", default=None, help="run folder (default runs/<time>-<model>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.npz")
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=False,
                        help="gradient checkpointing: recompute FRRUs in backward to save memory")
    # The paper's values are the defaults; these flags exist to fit smaller GPUs and quick tests.
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--downsample", type=int, default=None,
                        help="image downsampling factor (default: 4 for frrn_a, 2 for frrn_b)")
    parser.add_argument("--val-every", type=int, default=500,
                        help="validate and snapshot every N updates")
    parser.add_argument("--val-frames", type=int, default=None,
                        help="validate on the first N val frames only (default: all)")
    # decoding and downsampling a 2048x1024 frame takes 150-330 ms of CPU: enough loader threads,
    # and every decoded frame kept in memory (the train split: ~1.5 GB at x4, ~6 GB at x2), keep
    # the GPU fed after the first epoch
    parser.add_argument("--num-workers", type=int, default=8, help="data-loading threads")
    parser.add_argument("--cache-mb", type=int, default=None,
                        help="MB of decoded frames kept in memory per split (default: the whole "
                             "split at frrn_a's x4, 2048; 256 otherwise)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def make_config(args) -> TrainConfig:
    recipe = RECIPES[args.model]
    # the paper's shift at the paper's resolution; at another --downsample the data set's default,
    # which scales with the width (30 px at 512 wide, 40 px at 1024)
    downsample = recipe["downsample"] if args.downsample is None else args.downsample
    max_shift = recipe["max_shift"] if downsample == recipe["downsample"] else None
    if args.resume:  # the run's own shift, whatever rule chose it when the run started
        max_shift = run_config(args.out).max_shift
    return TrainConfig(
        data=args.data, model=args.model, device=args.device, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr,
        # "step" is the paper's schedule: x0.1 once, after `milestone` updates
        schedule="step", milestone=45_000,
        loss="bootstrapped",
        downsample=downsample, max_shift=max_shift,
        val_every=args.val_every, val_frames=args.val_frames, num_workers=args.num_workers,
        cache_mb=recipe["cache_mb"] if args.cache_mb is None else args.cache_mb,
        checkpointing=args.checkpointing, out=args.out, resume=args.resume, seed=args.seed)


def main(argv=None):
    """Train; returns the trainer's summary dict (step, best_miou, out, official scores)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(error):
        # errors the user can fix: one line, no traceback
        parser.exit(2, f"{parser.prog}: error: {str(error).splitlines()[0]}\n")

    try:
        # checks the arguments, the GPU and the dataset before any work starts
        trainer = Trainer(make_config(args))
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError,
            GPUUnavailableError) as error:
        fail(error)  # CheckpointError (a --resume that does not fit) is a ValueError
    config = trainer.config
    print(f"recipe: batch {config.batch_size}, Adam lr {config.lr:g} (x0.1 after "
          f"{config.milestone:,} updates), {config.loss} cross-entropy, images downsampled "
          f"x{config.downsample}, shifts +-{trainer.train_set.max_shift} px, "
          f"{config.steps:,} updates")
    try:
        summary = trainer.run()
    except (TrainingDiverged, ValueError, OSError, GPUUnavailableError) as error:
        fail(error)  # e.g. an unreadable frame met in the first epoch
    except MemoryError as error:  # CuPy's out-of-memory error is a MemoryError
        fail(f"out of memory ({str(error).splitlines()[0] if str(error) else 'no size given'}): "
             f"continue with the same arguments plus --resume --checkpointing --out {trainer.out}, "
             f"or start a new run with a smaller --batch-size")
    except KeyboardInterrupt:
        # a first Ctrl-C finishes the step in progress and saves last.npz; a second stops at once,
        # and the run resumes from its last checkpoint
        parser.exit(130, f"{parser.prog}: interrupted; continue from the last checkpoint with the "
                         f"same arguments plus --resume --out {trainer.out}\n")
    print(f"done: {summary['step']} steps, best validation mIoU {summary['best_miou']:.3f} "
          f"(training resolution); run folder {summary['out']}")
    official = summary.get("official")
    if official:
        print(f"official scores on val: {format_averages(official)}")
    sys.stdout.flush()
    return summary


if __name__ == "__main__":
    main()
