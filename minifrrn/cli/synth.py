"""`minifrrn synth`: synthetic street scenes written as Cityscapes-format files."""
import time


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--train", type=int, default=300, help="frames in the train split")
    parser.add_argument("--val", type=int, default=60, help="frames in the val split")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    from ..data.synth import generate
    start = time.perf_counter()
    generate(args.out, args.train, args.val, args.height, args.width, args.seed)
    elapsed = time.perf_counter() - start
    total = args.train + args.val
    print(f"wrote {total} frames ({args.width}x{args.height}) to {args.out} in {elapsed:.1f} s "
          f"({total / max(elapsed, 1e-9):.0f} frames/s)")
    return 0
