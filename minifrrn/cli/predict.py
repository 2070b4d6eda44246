"""`minifrrn predict`: label-id PNGs (official format) and colour overlays for a list of images."""


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("images", nargs="+", help="image files (PNG/JPEG)")
    parser.add_argument("--out", required=True, help="folder for <stem>_labelIds.png and "
                                                     "<stem>_overlay.png")
    parser.add_argument("--device", default="cpu")


def run(args):
    from ..training import predict_images
    written = predict_images(args.checkpoint, args.images, args.out, args.device)
    print(f"wrote {len(written)} predictions to {args.out}")
    return 0
