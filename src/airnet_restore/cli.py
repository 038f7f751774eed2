"""The ``airnet`` command: argument parsing only; every subcommand calls the public API.

Top-level imports stay light (no torch, numpy or OpenCV) so ``airnet --help`` is fast; each
subcommand imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airnet_restore.constants import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_OVERLAP,
    DEFAULT_VARIANT,
    IMPLS,
    JPEG_QUALITY,
    MIN_TILE,
    PRECISIONS,
)
from airnet_restore.data.layouts import LAYOUTS
from airnet_restore.errors import AirNetError
from airnet_restore.threads import wait_passively
from airnet_restore.web import DEFAULT_HOST, DEFAULT_PORT, Limits

if TYPE_CHECKING:
    from airnet_restore.loading import ModelDescriptor


def _cmd_info(_args: argparse.Namespace) -> int:
    from airnet_restore.variants import list_variants

    for v in list_variants():
        print(v.summary())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from airnet_restore.weights import convert

    meta = dict(item.split("=", 1) for item in args.meta if "=" in item)
    if len(meta) != len(args.meta):
        raise AirNetError("--meta takes KEY=VALUE")
    if args.detectors_from:
        from airnet_restore.loading import detector_metadata
        from airnet_restore.weights import build_model

        meta = {**detector_metadata(args.detectors_from, build_model(args.src)[0]), **meta}
    out = convert(args.src, args.dst, full=args.full, half=args.half, metadata=meta)
    print(f"wrote {out}")
    return 0


def _tile(value: str) -> int | str | None:
    if value in ("auto", "none", "0"):
        return None if value in ("none", "0") else "auto"
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a number of pixels, got {value!r}") from None
    if size < MIN_TILE:
        raise argparse.ArgumentTypeError(f"tile size {size} is too small; use at least {MIN_TILE} (or none)")
    return size


def _fraction(name: str) -> Callable[[str], float | str]:
    """The argparse type of option ``name`` (strength, anchor): auto or a number from 0 to 1."""

    def parse(value: str) -> float | str:
        from airnet_restore.postfilter import check_fraction

        if value == "auto":
            return value
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected auto or a number from 0 to 1, got {value!r}") from None
        try:
            check_fraction(name, number)
        except AirNetError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return number

    return parse


POSTFILTER_HELP = ("auto (default): the network's output finished by the post-filter stage, which judges the image "
                   "first (a photo found clean comes back nearly unchanged, noise is filtered with the network's output "
                   "as the guide); none: the network's output exactly, as training validation scores it")
STRENGTH_HELP = ("how much of the network's correction to apply: 'auto' (default) scales it by the probability that "
                 "the image is degraded, from the weights' degradation prototypes, so a photo found clean comes back "
                 "nearly unchanged (weights without prototypes: 1); or a number from 0 (the input) to 1 (the network's output)")


def _option(value: float | str) -> str:
    """A --strength / --anchor value as it would be typed: auto, 1, 0.5."""
    return value if isinstance(value, str) else f"{value:g}"


AUTO_NOTES = {"strength": "strength auto: the correction scaled by the detected probability of any corruption "
                          "(1 for weights without degradation prototypes)",
              "anchor": "anchor auto: the output moved to the noise model's estimate (the input Wiener-filtered with the "
                        "network's output as the pilot) by the detected probability that only noise is present, and "
                        "where noise of sigma over 8 is found by the check that the network's correction looks like "
                        "noise removal alone; where haze or rain is confirmed beside such noise, the network restores "
                        "the noise model's estimate (0 for weights without degradation prototypes)"}
OVERLAP_HELP = (f"overlap between the network's tiles in pixels (default {DEFAULT_OVERLAP}; much less can leave faint "
                "seams; the post-filter runs on the assembled output, so tiles do not change it)")
ANCHOR_HELP = ("how far to trust the input by the noise model: the output moves towards the input Wiener-filtered for "
               "the detected noise with the network's output as the pilot, which keeps the input's tones and its "
               "detail where it stands above the noise; 'auto' (default) by the probability that only noise is found, "
               "not where haze or rain is, and where the noise is strong (sigma over 8) by whether the network's "
               "correction looks like the removal of noise alone; where it finds haze or rain beside such noise, the network "
               "restores the noise model's estimate instead of the input (weights without prototypes: 0); or a number from 0 (the network's output) "
               "to 1 (the noise model's estimate). Where no noise is found the estimate is the input itself, so the "
               "anchor then scales the correction by 1 - A")


def _cmd_restore(args: argparse.Namespace) -> int:
    from airnet_restore.image_io import check_jpeg_quality
    from airnet_restore.inference import check_output_folder, restore_files
    from airnet_restore.inference.pipeline import RestoreOptions
    from airnet_restore.loading import load_model
    from airnet_restore.variants import sample_image

    inputs = [*args.inputs, *([sample_image()] if args.sample else [])]
    if not inputs:
        raise AirNetError("no inputs: give image files, folders or globs, or --sample for the bundled sample")
    check_output_folder(args.output, args.ext, args.suffix)  # before the model loads
    check_jpeg_quality(args.jpeg_quality)
    RestoreOptions(postfilter=args.postfilter, strength=args.strength, anchor=args.anchor)  # knobs beside none: refused now
    model: ModelDescriptor
    if args.backend == "onnxruntime":
        model = _onnx_backend(args)
    elif str(args.weights).endswith(".onnx"):
        raise AirNetError(f"{args.weights} is an ONNX model: add --backend onnxruntime")
    else:
        model = load_model(args.weights, device=args.device, dcn_impl=args.dcn)
    report = restore_files(
        inputs,
        args.output,
        model,
        suffix=args.suffix, ext=args.ext, skip_existing=args.skip_existing, overwrite=args.overwrite,  # the files
        max_pixels=args.max_pixels, jpeg_quality=args.jpeg_quality,
        tile=args.tile, tile_overlap=args.tile_overlap, precision=args.precision,  # the network
        postfilter=args.postfilter, strength=args.strength, anchor=args.anchor,  # the post-filter
        progress=not args.quiet,
    )
    for src, dst in report.done:
        found = report.detected.get(src)
        print(f"{src} -> {dst}" + (f"  [{found.summary()}; {report.blends[src].describe()}]" if found else ""))
    for src, warning in report.warnings:
        print(f"warning: {src}: {warning}", file=sys.stderr)
    for src, reason in report.skipped:
        print(f"skipped {src}: {reason}", file=sys.stderr)
    for name, reason in report.failed:
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _onnx_backend(args: argparse.Namespace) -> ModelDescriptor:
    """The model of ``restore --backend onnxruntime``, after refusing the options it cannot honour."""
    from airnet_restore.export import load_onnx

    if not str(args.weights).endswith(".onnx"):
        raise AirNetError("--backend onnxruntime needs --weights MODEL.onnx (make one with `airnet export MODEL.onnx`)")
    if args.device not in ("auto", "cpu") or args.precision != "fp32" or args.dcn != "auto":
        raise AirNetError("--backend onnxruntime runs on the CPU in the precision it was exported in: "
                          "drop --device, --precision and --dcn (export with --half for float16, --double for float64)")
    return load_onnx(args.weights)


def _cmd_export(args: argparse.Namespace) -> int:
    from airnet_restore.export import export_weights

    out = export_weights(args.weights, args.out, precision="fp16" if args.half else "fp64" if args.double else "fp32")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from airnet_restore.data.check import check_data

    report = check_data(args.path, args.layout)
    print("\n".join(report.lines()))
    return 0 if report.usable else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from airnet_restore.train import Trainer, load_config
    from airnet_restore.train.distributed import shutdown_process_group

    overrides = [*args.set, *([f"train.init={json.dumps(args.init)}"] if args.init else []),
                 *(["train.init_partial=true"] if args.init_partial else [])]
    config = load_config(args.config, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    trainer = Trainer(config, run_dir, resume=args.resume, device=args.device, progress=not args.quiet, name=args.name)
    if trainer.dist.is_main:
        if args.resume and trainer.resumed_from is None:
            print(f"no state found in {run_dir}; starting fresh")
        for line in trainer.init_report:
            print(line)
    try:
        trainer.run()
    finally:
        shutdown_process_group()
    if trainer.dist.is_main:
        state = "stopped early (resume with --resume auto)" if trainer.stop_requested else "finished"
        print(f"training {state} at epoch {trainer.epoch}, iteration {trainer.iteration}; run folder {run_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from airnet_restore.evaluate import (
        baseline_methods,
        build_tasks,
        check_options,
        check_out_folder,
        evaluate,
        heldout_sets,
        model_rows,
        parse_sets,
    )
    from airnet_restore.loading import load_model
    from airnet_restore.metrics import get_protocol

    check_options(crop=args.crop, seed=args.seed, crop_border=args.crop_border, grid=args.grid, tile_overlap=args.tile_overlap)
    if isinstance(args.tile, int) and 2 * args.tile_overlap >= args.tile:
        raise AirNetError(f"--tile-overlap {args.tile_overlap} must be less than half the tile size {args.tile}")
    check_out_folder(args.out)  # before any image is read or model loaded
    protocol = get_protocol(args.protocol, args.crop_border)
    include = [s for s in (args.include or "").split(",") if s]
    sets = parse_sets(args.set) + (heldout_sets(args.heldout) if args.heldout else [])
    if not sets:
        raise AirNetError("no test sets: give --set NAME=PATH and/or --heldout DIR")
    tasks = [t for name, path in sets for t in build_tasks(name, path, protocol, args.crop, include, args.seed)]
    methods = {}
    for weights in args.weights:
        model = load_model(weights, device=args.device)
        knobs = "".join(f", {name} {_option(value)}" for name, value in (("strength", args.strength), ("anchor", args.anchor))
                        if value != "auto")
        methods.update(model_rows(Path(weights).stem, model, {"strength": args.strength, "anchor": args.anchor},
                                  f"+post-filter{knobs}", tile=args.tile, tile_overlap=args.tile_overlap))
    baselines = args.baselines if args.baselines is not None else "all" if args.heldout else "identity,cbm3d,dcp"
    methods.update(baseline_methods([k for k in baselines.split(",") if k]))
    if not methods:
        raise AirNetError("nothing to evaluate: give --weights and/or --baselines")
    out = Path(args.out)
    report = evaluate(tasks, methods, protocol, save_dir=out / "images" if args.save_images or args.grid else None,
                      grid_images=args.grid, progress=not args.quiet)
    if args.weights:
        report.notes.append(
            "Two rows for each weights: `(network)` is the network's output alone, as training validation scores it; "
            f"`(+post-filter)` restores as `airnet restore` does with `--strength {_option(args.strength)} --anchor {_option(args.anchor)}`"
            + "".join(f"; {AUTO_NOTES[name]}" for name, value in (("strength", args.strength), ("anchor", args.anchor))
                      if value == "auto")
            + "."
        )
    print(report.markdown())
    for path in report.write(out):
        print(f"wrote {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from airnet_restore.web import Limits
    from airnet_restore.web.server import serve

    limits = Limits(max_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels, workers=args.workers,
                    queue=args.queue, uploads=args.uploads, timeout=args.timeout, read_timeout=args.read_timeout)
    serve(args.weights, args.host, args.port, args.device, limits, args.allow_host, args.allow_origin)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from airnet_restore.inspection import calibrate, inspect_files
    from airnet_restore.inspection.plot import check_picture_target
    from airnet_restore.loading import load_model

    if args.calibrate:
        if args.inputs or args.json or args.map or args.plot:
            raise AirNetError("--calibrate takes no images, --json, --map or --plot: it writes calibrated weights")
        types = [t for t in (args.types or "").split(",") if t] or None
        weights_in, weights_out = args.calibrate
        calibration = calibrate(weights_in, weights_out, args.photos, types=types, exclude=args.exclude, crops=args.crops,
                                seed=args.seed, device=args.device, progress=not args.quiet)
        print("\n".join(calibration.lines()))
        return 0
    if not args.inputs:
        raise AirNetError("no inputs: give image files, folders or globs (or --calibrate WEIGHTS_IN WEIGHTS_OUT)")
    if args.plot:
        check_picture_target(args.plot)  # before the weights load
    model = load_model(args.weights, device=args.device)
    inspector = model.inspector()
    if inspector is None:
        raise AirNetError(f"{args.weights}: no degradation prototypes for these weights: compute them with "
                          "`airnet inspect --calibrate`")
    report = inspect_files(args.inputs, inspector, map_dir=args.map, plot=args.plot, max_pixels=args.max_pixels,
                           progress=not (args.quiet or args.json))
    if args.json:
        print(report.to_json())
    else:
        for result in report.results:
            print(f"{result.file}: {result.summary()}")
    if report.plot_file:
        print(f"wrote {report.plot_file}", file=sys.stderr if args.json else sys.stdout)
    for src, reason in report.failed:
        print(f"FAILED {src}: {reason}", file=sys.stderr)
    print(report.summary(), file=sys.stderr if args.json else sys.stdout)
    return 1 if report.failed else 0


def _version() -> str:
    """The installed package's version (from its metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airnet-restore")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airnet", description="All-in-one image restoration (AirNet).")
    parser.add_argument("--version", action="version", version=f"airnet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", help="restore images (files, folders, globs) into an output folder")
    p.add_argument("inputs", nargs="*", help="image files, folders (recursive) or globs")
    p.add_argument("--sample", action="store_true", help="also restore the bundled sample photo (noisy, CC0)")
    p.add_argument("-o", "--output", required=True, help="output folder; the trees of input folders and globs are mirrored")
    p.add_argument("--weights", default=DEFAULT_VARIANT, help=f"registered variant, .safetensors or official .pth (default {DEFAULT_VARIANT})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="deformable convolutions sample in fp32 (fp64 in fp64; bf16 on a CPU runs their product in bf16); fp64: about 3x slower on a CPU, the same "
                        "uint8 output as an `airnet export --double` model in onnxruntime")
    p.add_argument("--tile", type=_tile, default="auto", help="tile size in pixels, 'auto' (from free memory, default) or 'none'")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, help=OVERLAP_HELP)
    p.add_argument("--postfilter", choices=["auto", "none"], default="auto", help=POSTFILTER_HELP)
    stage = p.add_argument_group("post-filter knobs (advanced; docs: the post-filter page)")
    stage.add_argument("--strength", type=_fraction("strength"), default="auto", help=STRENGTH_HELP)
    stage.add_argument("--anchor", type=_fraction("anchor"), default="auto", help=ANCHOR_HELP)
    p.add_argument("--suffix", default="", help="added to output file names, e.g. _restored")
    p.add_argument("--ext", help="output format by extension (png, tif, jpg, ...); default: the input's")
    p.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY, metavar="N",
                   help=f"quality of JPEG outputs, 1-100 (default {JPEG_QUALITY}, no chroma subsampling)")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists (an existing output is otherwise refused)")
    p.add_argument("--overwrite", action="store_true", help="allow an output to replace an existing file: its own input or an earlier output (never another input)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--dcn", default="auto", choices=list(IMPLS), help="deformable-convolution implementation (default auto)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="torch (default), or onnxruntime on CPU with --weights MODEL.onnx from `airnet export`")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("eval", help="score a model (and classical baselines) on test sets with a named protocol")
    p.add_argument("--set", action="append", default=[], metavar="NAME=PATH",
                   help="bsd68, urban100, bsd68-sv (clean folders), rain100l, sots, paired (input/ + target/), "
                        "clean (a clean folder as input), or a degradation name (noise25, rain, haze, ...) "
                        "applied to a clean folder; repeatable")
    p.add_argument("--heldout", metavar="DIR", help="the held-out protocol on a clean folder, e.g. data/pool/heldout "
                   "(python data/photo_pool.py --split heldout): sets clean and every ho_* degradation, baselines all "
                   "(unless --baselines); record each look in RUNS.md")
    p.add_argument("--weights", action="append", default=[],
                   help="registered variant, .safetensors or official .pth (two rows each: the network alone and "
                        "with the post-filter); repeat to compare several in one table; omit to score baselines only")
    p.add_argument("--baselines", help="comma list of identity, cbm3d, cbm3d-est, wavelet, nlm, dcp, wavelet+dcp, "
                   "or all ('' for none; default identity,cbm3d,dcp, or all with --heldout)")
    p.add_argument("--protocol", default="airnet", choices=["airnet", "basicsr"], help="metric protocol (default airnet)")
    p.add_argument("--crop-border", type=int, default=0, help="pixels removed at each border (basicsr protocol)")
    p.add_argument("--crop", type=int, help="evaluate a centre crop of this size (faster; not the paper's protocol)")
    p.add_argument("--include", help="comma list of file names to keep from each set")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic degradations (default 0: the paper's test noise; "
                   "training validation uses val.seed)")
    p.add_argument("--out", default="eval", help="folder for results.md/.csv/.json and per_image.csv (default eval)")
    p.add_argument("--save-images", action="store_true", help="save every output (PNG, rounded to uint8)")
    p.add_argument("--grid", type=int, default=0, metavar="N", help="save input|output|target grids for the first N images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps for the models (default auto)")
    p.add_argument("--tile", type=_tile, default="auto", help="tile size in pixels, 'auto' (from free memory, default) or 'none'")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, help=OVERLAP_HELP)
    p.add_argument("--strength", type=_fraction("strength"), default="auto", help=STRENGTH_HELP + "; as `airnet restore` applies it, in the +post-filter rows")
    p.add_argument("--anchor", type=_fraction("anchor"), default="auto", help=ANCHOR_HELP + "; as `airnet restore` applies it, in the +post-filter rows")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("train", help="train AirNet from a YAML preset (torchrun-ready)")
    p.add_argument("config", help="YAML config, e.g. configs/aio.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.lr=2e-4")
    p.add_argument("--run-dir", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", help="a training state file, or 'auto' for the latest in the run folder")
    p.add_argument("--init", metavar="WEIGHTS", help="start from weights (variant, .safetensors, .pth or training state) "
                   "with a fresh optimiser and schedule; the architecture comes from them unless the config sets one")
    p.add_argument("--init-partial", action="store_true", help="with --init: load what fits, start the rest fresh, report both")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun each rank takes its LOCAL_RANK GPU)")
    p.add_argument("--name", default="airnet", help="variant name written into the exported weights")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="report counts, missing pairs, unreadable files, grey/colour and sizes")
    p.add_argument("path", help="dataset root folder")
    p.add_argument("--layout", default="clean", choices=list(LAYOUTS), help="folder layout (default clean)")
    p.set_defaults(func=_cmd_data_check)

    p = sub.add_parser("info", help="list the registered model variants: sizes, weights, licence, tasks, precision, memory")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("export", help="export a model to ONNX (opset 19, dynamic size) for onnxruntime and other runtimes")
    p.add_argument("out", help="output .onnx file")
    p.add_argument("--weights", default=DEFAULT_VARIANT, help=f"registered variant, .safetensors or official .pth (default {DEFAULT_VARIANT})")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default onnx)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_true", help="float16 weights and compute (deformable convolutions in float32)")
    precision.add_argument("--double", action="store_true", help="float64 compute, about 5x slower: the same uint8 output "
                           "as `airnet restore --precision fp64`")
    p.set_defaults(func=_cmd_export)

    limits = Limits()
    p = sub.add_parser("serve", help="a local web page and HTTP API: drop a photo, compare, download (extra [web])")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--weights", default=DEFAULT_VARIANT, help=f"registered variant, .safetensors or official .pth (default {DEFAULT_VARIANT})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--workers", type=int, default=limits.workers, help=f"images restored at the same time (default {limits.workers})")
    p.add_argument("--queue", type=int, default=limits.queue, help=f"requests that may wait beyond those; more get 503 (default {limits.queue})")
    p.add_argument("--timeout", type=float, default=limits.timeout, help=f"seconds a restore may take once its upload is in (default {limits.timeout:g})")
    p.add_argument("--read-timeout", type=float, default=limits.read_timeout,
                   help=f"seconds a client has to send its whole upload; slower ones get 408 (default {limits.read_timeout:g})")
    p.add_argument("--uploads", type=int, default=limits.uploads,
                   help=f"uploads received at the same time; more get 503 (default {limits.uploads})")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name the server answers to (NAME or NAME:PORT; a LAN name or a proxy's); repeatable")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another site whose pages may call the API, e.g. https://example.com; repeatable")
    p.add_argument("--max-upload-mb", type=int, default=limits.max_bytes // 2**20, help=f"largest upload in MiB (default {limits.max_bytes // 2**20})")
    p.add_argument("--max-pixels", type=int, default=limits.max_pixels, help=f"largest image, width x height (default {limits.max_pixels:,})")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("inspect", help="what is wrong with each image (type, confidence, noise sigma, haze density), "
                       "from one pass of the degradation encoder")
    p.add_argument("inputs", nargs="*", help="image files, folders (recursive) or globs")
    p.add_argument("--json", action="store_true", help="print a JSON list: file, type, confidence, sigma, haze_density, presence")
    p.add_argument("--map", metavar="DIR", help="also judge every 64-px region; write <name>.map.png per image into DIR "
                   "(and the regions into --json)")
    p.add_argument("--plot", metavar="OUT.png", help="plot the embedding of all inspected images (PCA), coloured by detected type")
    p.add_argument("--weights", default=DEFAULT_VARIANT, help=f"registered variant or .safetensors with degradation prototypes "
                   f"(default {DEFAULT_VARIANT})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--calibrate", nargs=2, metavar=("WEIGHTS_IN", "WEIGHTS_OUT"),
                   help="compute the degradation prototypes of WEIGHTS_IN on its training family and write the weights "
                        "with them to WEIGHTS_OUT (.safetensors); rerun whenever the weights change")
    p.add_argument("--photos", metavar="DIR", help="--calibrate: clean photos (default: the folder of the weights' training config)")
    p.add_argument("--types", help="--calibrate: comma list of registered degradations (default: the weights' training types, "
                   "else the general family)")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="--calibrate: a photo file name never to use, beside the training config's exclusions; repeatable")
    p.add_argument("--crops", type=int, default=4, help="--calibrate: random crops per photo and type (default 4)")
    p.add_argument("--seed", type=int, default=0, help="--calibrate: seed of the crops and degradations (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("convert", help="convert an official .pth checkpoint to safetensors")
    p.add_argument("src", help="official checkpoint (.pth) or our .safetensors")
    p.add_argument("dst", help="output .safetensors file, or a folder: written there as SRC's name with .safetensors")
    p.add_argument("--full", action="store_true", help="keep the full training state (key encoder, queue)")
    p.add_argument("--half", action="store_true", help="store float tensors as float16")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="add or replace a metadata field (e.g. licence=CC0)")
    p.add_argument("--detectors-from", metavar="WEIGHTS",
                   help="copy the detectors and post-filter parameters of WEIGHTS (a variant or file) whose encoder SRC "
                        "shares (weights fine-tuned with train.freeze: [encoder])")
    p.set_defaults(func=_cmd_convert)
    return parser


# Commands that keep worker processes (the training loader's) or threads (the server's) until the interpreter
# exits: the console script lets them end as usual.
ENDS_AS_USUAL = frozenset({"train", "serve"})


def main(argv: Sequence[str] | None = None) -> int:
    return _execute(build_parser().parse_args(argv))


def _execute(args: argparse.Namespace) -> int:
    wait_passively()
    try:
        return args.func(args)
    except AirNetError as e:
        print(f"airnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"airnet {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console script: ``main()``, then the process ends at once, without tearing down the interpreter.

    Every command has finished its work and written its files when it returns; what is left is Python freeing
    torch's and numba's modules one by one, about a second after a megapixel restore on a 2-core CPU (0.5-0.6 s
    after importing torch alone). ``ENDS_AS_USUAL`` commands exit as usual. A reader that leaves early
    (``airnet info | head -1``) ends the command as SIGPIPE ends other tools (exit status 141), without a
    traceback. An error that the command does not catch ends as usual, with its traceback."""
    args = build_parser().parse_args()
    try:
        code = _execute(args)
        sys.stdout.flush()
    except BrokenPipeError:
        os._exit(141)  # the unflushed rest cannot reach anyone, and flushing it again at exit would print an error
    if args.command in ENDS_AS_USUAL:
        sys.exit(code)
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
