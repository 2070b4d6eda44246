"""`minifrrn bench`: op and model timings, each as a ratio to a floor measured in the same run."""

from ..files import atomic_write_text
from . import CLIError, check_output_file


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu | gpu")
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats, no frrn_a")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (median)")
    parser.add_argument("--json", help="also write the table as JSON to this file")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="skip the frrn_a step with gradient checkpointing")
    parser.add_argument("--every-conv", nargs="?", const="frrn_a", default=None,
                        choices=["frrn_a", "frrn_b"], metavar="MODEL",
                        help="instead: every distinct convolution of a training step of MODEL "
                             "(frrn_a, the default, at 256x512; frrn_b at 512x1024; batch 1) "
                             "against its GEMM floor, and their weighted total")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                        help="instead of running: two files written by --json, side by side "
                             "(both ratios, both times, new/old time)")
    parser.add_argument("--tiny", action="store_true", help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args):
    from ..bench import format_comparison, format_rows, load_json, run_benchmarks, to_json
    if args.compare:
        running = [option for option, given in (("--json", args.json is not None),
                                                 ("--quick", args.quick),
                                                 ("--every-conv", args.every_conv),
                                                 ("--repeats", args.repeats is not None),
                                                 ("--device", args.device != "cpu"),
                                                 ("--no-checkpointing", args.no_checkpointing),
                                                 ("--tiny", args.tiny))
                   if given]
        if running:
            raise CLIError(f"--compare reads two --json files and runs nothing: drop "
                           f"{', '.join(running)}")
        print(format_comparison(load_json(args.compare[0]), load_json(args.compare[1])))
        return 0
    if args.json:
        check_output_file(args.json, "--json")
    rows, machine = run_benchmarks(args.device, quick=args.quick, tiny=args.tiny,
                                   repeats=args.repeats, checkpointing=not args.no_checkpointing,
                                   every_conv=args.every_conv)
    print(format_rows(rows, machine))
    if args.json:
        atomic_write_text(args.json, to_json(rows, machine))
    return 0
