"""`minifrrn train`: train FRRN. With no arguments: frrn_tiny on synthetic street scenes, CPU.

To reproduce the paper on real Cityscapes with a GPU:

    minifrrn train --data /path/to/cityscapes --model frrn_b --device gpu --downsample 2 \\
                   --batch-size 3 --steps 60000 --schedule step --lr 1e-3 --val-every 500

Measured on an H200: a FRRN B training step at 512×1024 with batch 3 takes 0.58 s and 32.5 GiB of GPU
memory (FRRN A at 256×512, batch 1: 55 ms, 2.8 GiB). If that does not fit, add --checkpointing
(recomputes every FRRU in backward: 27.3 GiB, 0.90 s), lower --batch-size, or train at
--downsample 4.
"""
import argparse
import sys

from ..metrics import format_averages
from ..training import RUN_SETTINGS, TrainConfig, Trainer, TrainingDiverged, run_config
from . import CLIError

DEFAULTS = TrainConfig()


def add_arguments(parser):
    # the run's settings default to None here, so that --resume can tell those given from those
    # left out (which it takes from the run); a new run fills them from TrainConfig's defaults
    parser.add_argument("--data", default=None,
                        help="'synthetic' (generated on first use; the default) or a Cityscapes "
                             "root folder")
    parser.add_argument("--model", default=None, help="tiny (the default) | frrn_a | frrn_b")
    parser.add_argument("--device", default=None, help="cpu (the default) | gpu")
    parser.add_argument("--steps", type=int, default=None, help=f"default {DEFAULTS.steps}")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"default {DEFAULTS.batch_size}")
    parser.add_argument("--lr", type=float, default=None, help=f"default {DEFAULTS.lr:g}")
    parser.add_argument("--schedule", default=None,
                        help="cosine (the default) | poly | step (x0.1 after --milestone updates) "
                             "| none")
    parser.add_argument("--milestone", type=int, default=None,
                        help=f"default {DEFAULTS.milestone}")
    parser.add_argument("--downsample", type=int, default=None,
                        help="image downsampling factor (default 2 on synthetic, 4 on Cityscapes: "
                             "FRRN A's 256x512; use 2 for FRRN B's 512x1024)")
    parser.add_argument("--max-shift", type=int, default=None,
                        help="translation augmentation in pixels (default: FRRN's 40 px at 1024 "
                             "wide and above, 30 px at 512 wide, straight between them, and 30/512 "
                             "of the width below)")
    parser.add_argument("--loss", default=None, help="bootstrapped (the default) | ce")
    parser.add_argument("--val-every", type=int, default=None, help=f"default {DEFAULTS.val_every}")
    parser.add_argument("--val-frames", type=int, default=None,
                        help="validate on the first N val frames only")
    parser.add_argument("--seed", type=int, default=None, help=f"default {DEFAULTS.seed}")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="threads that load and augment batches ahead of the training step "
                             f"(default {DEFAULTS.num_workers})")
    parser.add_argument("--cache-mb", type=int, default=None,
                        help="MB of decoded, downsampled frames kept in memory per split, so that "
                             "later epochs skip PNG decoding (default 256; Cityscapes' train split "
                             "takes about 1.5 GB at x4, 6 GB at x2; 0: none)")
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="gradient checkpointing: recompute FRRUs in backward to save memory "
                             "(off by default; --no-checkpointing turns it off on a --resume)")
    parser.add_argument("--out", default=None, help="run folder (default runs/<time>-<model>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/last.npz (default: the newest run under runs/) "
                             "with the run's own settings, which need not be repeated")
    parser.add_argument("--no-final-eval", action="store_true",
                        help="skip the official evaluation at the end")
    parser.add_argument("--quiet", action="store_true")


def run(args):
    # what was given; the rest comes from the run (--resume) or from TrainConfig's defaults
    given = {name: getattr(args, name) for name in
             RUN_SETTINGS + ("steps", "checkpointing", "device", "num_workers", "cache_mb")
             if getattr(args, name) is not None}
    this_time = dict(final_eval=not args.no_final_eval, quiet=args.quiet)
    if args.resume:
        # the run's own settings, with those given on the command line (the trainer refuses any
        # that differ from the run's)
        config = run_config(args.out, **given, **this_time)
    else:
        data = given.get("data", DEFAULTS.data)
        given.setdefault("downsample", 2 if data == "synthetic" else 4)
        config = TrainConfig(**{**given, **this_time, "out": args.out})
    trainer = None
    try:
        trainer = Trainer(config)
        summary = trainer.run()
    except TrainingDiverged as error:
        raise CLIError(str(error)) from None
    except KeyboardInterrupt:
        if trainer is not None and getattr(trainer, "said_interrupted", False):
            return 130  # the trainer said where it saved and how to continue
        raise  # setup or the final evaluation: the command's one line
    print(f"done: {summary['step']} steps, best validation mIoU {summary['best_miou']:.3f}; "
          f"run folder {summary['out']}")
    official = summary.get("official")
    if official:
        print(f"official scores on val: {format_averages(official)}")
    sys.stdout.flush()
    return 0
