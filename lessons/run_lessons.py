"""Run the lesson notebooks top to bottom, each in a fresh kernel.

    python lessons/run_lessons.py              # execute every lesson and save its outputs in place
    python lessons/run_lessons.py 04 07        # only the lessons whose names start with 04 or 07
    python lessons/run_lessons.py --check      # execute, report the time of each, write nothing

The committed notebooks carry the outputs of the last run of this script, so they read well without
running them; the test suite (tests/test_lessons.py) executes them the same way with ``--check``'s
function and fails on the first error, including a failing assert cell.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
# no cell may run longer: the slowest, lesson 12's training, takes about 15 s on two quiet cores, and
# several times that when other work shares them
CELL_TIMEOUT_S = 180


def lesson_paths(prefixes=()):
    paths = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    return paths


def execute(path, save=False):
    """Execute one notebook in a fresh kernel; returns the executed notebook and seconds taken.

    Raises nbclient's CellExecutionError (which names the cell and the error) on any failure."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # the kernel must draw inline figures, whatever backend the calling process uses
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(LESSONS)}}, record_timing=False)
    started = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - started
    if save:
        nbformat.write(notebook, path)
    return notebook, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="run only lessons whose names start with these")
    parser.add_argument("--check", action="store_true", help="execute without saving outputs")
    args = parser.parse_args(argv)
    paths = lesson_paths(args.prefixes)
    if not paths:
        parser.error(f"no lesson matches {args.prefixes}: names look like 04_convolution.ipynb")
    for path in paths:
        _, seconds = execute(path, save=not args.check)
        print(f"{path.name:40s} {seconds:6.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
