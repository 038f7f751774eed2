"""The ``airnet`` command: argument parsing only; every subcommand calls the public API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airnet_restore.errors import AirNetError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airnet", description="All-in-one image restoration (AirNet).")
    sub = parser.add_subparsers(dest="command", required=True)

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
