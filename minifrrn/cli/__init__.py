"""The ``minifrrn`` command.

Each subcommand lives in its own module of this package (``minifrrn/cli/<name>.py``) with two
functions: ``add_arguments(parser)`` and ``run(args) -> int``. Building the parser imports every
subcommand's module for its arguments; what a subcommand needs only to run is imported in ``run``.

Errors the user can fix (a wrong path, a bad flag value, a missing GPU) are raised as ``CLIError``,
``ValueError``, ``TypeError``, ``FileNotFoundError``, ``FileExistsError`` or ``GPUUnavailableError``; ``main`` prints their
one-line message (no traceback) and exits with status 2. Running out of memory (on the CPU or the
GPU) is one line too, naming the setting that makes the largest arrays smaller.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from ..backend import GPUUnavailableError, tune_cpu_allocator

COMMANDS = {
    "train": "train a model (no arguments: frrn_tiny on synthetic street scenes, on the CPU)",
    "eval": "score a checkpoint or a folder of label-id PNGs with the four official Cityscapes metrics",
    "predict": "write label-id PNGs (and colour overlays) for a list of images",
    "synth": "generate synthetic street scenes as real Cityscapes-format files",
    "bench": "time the ops and models, as ratios to floors measured in the same run",
}


def out_of_memory_fix(args):
    """What to change when a command runs out of memory: the setting its largest arrays grow
    with, among those the command was not already given at their smallest."""
    on_gpu = getattr(args, "device", "cpu") == "gpu"
    if args.command == "train":
        recompute = ("" if getattr(args, "checkpointing", None) else
                     "continue with --resume --checkpointing (the FRRUs are then recomputed in "
                     "backward, which needs less memory), or ")
        smaller = ("" if getattr(args, "batch_size", None) == 1 else "a smaller --batch-size or ")
        return f"{recompute}start a new run into another --out with {smaller}a larger --downsample"
    if args.command == "eval" and getattr(args, "batch_size", 1) > 1:
        return "use a smaller --batch-size"
    if args.command in ("eval", "predict"):
        what = "the frames" if args.command == "eval" else "the images"
        return (f"{what} do not fit this GPU's memory even one at a time: use --device cpu"
                if on_gpu else f"{what} do not fit this machine's memory even one at a time")
    if args.command == "bench":
        every_conv = getattr(args, "every_conv", None)
        if every_conv:
            return (f"--every-conv {every_conv} takes the most memory: "
                    f"{'use frrn_a, or ' if every_conv != 'frrn_a' else ''}leave it out")
        if not getattr(args, "quick", False):
            return "use --quick"
        return ("this GPU has too little memory for the bench's shapes: use --device cpu" if on_gpu
                else "this machine has too little memory for the bench's shapes")
    return "choose a smaller --height and --width"  # synth


class CLIError(Exception):
    """A problem the user can fix; the message is printed as one line and the command exits 2."""


def check_output_file(path, option):
    """Refuse, before any work, an output file whose folder is missing or not writable (a bench or
    an evaluation would otherwise run to its end and fail there)."""
    if Path(path).is_dir():
        raise CLIError(f"{option} {path} is a folder: give a file name (e.g. {Path(path) / 'out.json'})")
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise CLIError(f"{option} {path}: folder {folder} does not exist: create it or choose "
                       f"another path")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{option} {path}: folder {folder} is not writable: choose another path")


class NotImplementedCommand(CLIError):
    """Raised by a subcommand that is not written yet."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minifrrn", description="Full-Resolution Residual Networks, from scratch.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"minifrrn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f".{name}", __name__)
        module.add_arguments(p)
    return parser


def main(argv=None) -> int:
    try:  # building the parser imports every command: a Ctrl-C can land there too
        parser = build_parser()
    except KeyboardInterrupt:
        print("minifrrn: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        module = importlib.import_module(f".{args.command}", __name__)
        tune_cpu_allocator()  # reuse freed memory instead of faulting in fresh pages for every array
        return int(module.run(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's code for it, no traceback
        print(f"minifrrn {args.command}: interrupted", file=sys.stderr)
        return 130
    # NumPy's and CuPy's out-of-memory errors are both MemoryErrors; their message says how much
    # was asked for
    except MemoryError as error:
        detail = str(error).splitlines()[0] if str(error) else "no size given"
        print(f"minifrrn {args.command}: error: out of memory ({detail}): "
              f"{out_of_memory_fix(args)}", file=sys.stderr)
        return 2
    # OSError: a full disk or a file-size limit among them (checkpoints and a run's files name the
    # file and what is kept)
    except (CLIError, ValueError, TypeError, OSError, KeyError, GPUUnavailableError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"minifrrn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
