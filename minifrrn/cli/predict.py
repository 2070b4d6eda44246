"""`minifrrn predict`: label-id PNGs (official format) and colour overlays (unless --no-overlays)
for a list of images."""


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("images", nargs="+", help="image files (PNG/JPEG)")
    parser.add_argument("--out", required=True, help="folder for <stem>_labelIds.png and "
                                                     "<stem>_overlay.png (unless --no-overlays)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-overlays", action="store_true",
                        help="write the label-id PNGs only: cityscapesscripts' evaluation wants "
                             "one PNG per frame in its results folder")


def run(args):
    from ..training import predict_images
    written = predict_images(args.checkpoint, args.images, args.out, args.device,
                             overlays=not args.no_overlays)
    print(f"wrote {len(written)} predictions to {args.out}")
    return 0
