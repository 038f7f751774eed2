"""The ``airnet`` command: argument parsing only; every subcommand calls the public API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airnet_restore.data.layouts import LAYOUTS
from airnet_restore.errors import AirNetError
from airnet_restore.ops.deform_conv import IMPLS
from airnet_restore.restore.io import DEFAULT_MAX_PIXELS
from airnet_restore.variants import DEFAULT_VARIANT


def _cmd_info(args: argparse.Namespace) -> int:
    from airnet_restore.models import AirNet
    from airnet_restore.variants import list_variants

    for v in list_variants():
        model = AirNet(v.config)
        n_r = sum(p.numel() for p in model.R.parameters())
        n_e = sum(p.numel() for p in model.E.E.encoder_q.parameters())
        n_all = sum(p.numel() for p in model.parameters())
        weights = v.weights_path()
        print(f"{v.name}: restorer {n_r:,} + encoder {n_e:,} x 2 = {n_all:,} parameters; "
              f"weights: {weights if weights else 'none bundled'}")
        print(f"    {v.description}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from airnet_restore.weights import convert

    out = convert(args.src, args.dst, full=args.full, half=args.half)
    print(f"wrote {out}")
    return 0


def _tile(value: str) -> int | str | None:
    if value in ("auto", "none", "0"):
        return None if value in ("none", "0") else "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a number of pixels, got {value!r}") from None


def _cmd_restore(args: argparse.Namespace) -> int:
    from airnet_restore.restore import restore_files
    from airnet_restore.variants import load_model

    model = load_model(args.weights, device=args.device, dcn_impl=args.dcn)
    report = restore_files(
        args.inputs,
        args.output,
        model,
        suffix=args.suffix,
        ext=args.ext,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        precision=args.precision,
        progress=not args.quiet,
    )
    for src, dst in report.done:
        print(f"{src} -> {dst}")
    for src, reason in report.failed:
        print(f"FAILED {src}: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from airnet_restore.data.check import check_data

    report = check_data(args.path, args.layout)
    print("\n".join(report.lines()))
    return 0 if report.usable else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airnet", description="All-in-one image restoration (AirNet).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", help="restore images (files, folders, globs) into an output folder")
    p.add_argument("inputs", nargs="+", help="image files, folders (recursive) or globs")
    p.add_argument("-o", "--output", required=True, help="output folder; input folder trees are mirrored")
    p.add_argument("--weights", default=DEFAULT_VARIANT, help=f"registered variant, .safetensors or official .pth (default {DEFAULT_VARIANT})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="deformable convolutions always run in fp32")
    p.add_argument("--tile", type=_tile, default="auto", help="tile size in pixels, 'auto' (from free memory, default) or 'none'")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles in pixels (default 32)")
    p.add_argument("--suffix", default="", help="added to output file names, e.g. _restored")
    p.add_argument("--ext", help="output format by extension (png, tif, jpg, ...); default: the input's")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    p.add_argument("--overwrite", action="store_true", help="allow an output to replace its own input")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--dcn", default="auto", choices=list(IMPLS), help="deformable-convolution implementation (default auto)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="report counts, missing pairs, unreadable files, grey/colour and sizes")
    p.add_argument("path", help="dataset root folder")
    p.add_argument("--layout", default="clean", choices=list(LAYOUTS), help="folder layout (default clean)")
    p.set_defaults(func=_cmd_data_check)

    p = sub.add_parser("info", help="list the registered model variants and their sizes")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="convert an official .pth checkpoint to safetensors")
    p.add_argument("src", help="official checkpoint (.pth) or our .safetensors")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument("--full", action="store_true", help="keep the full training state (key encoder, queue)")
    p.add_argument("--half", action="store_true", help="store float tensors as float16")
    p.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AirNetError as e:
        print(f"airnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"airnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
