"""onnxruntime vs our PyTorch CPU path (numba DCN) for the default variant, in one process.

    python benchmarks/onnx_speed.py [--sizes 256,512,1024] [--repeats 1] [--precision fp32|fp64] [--onnx model.onnx]

Both run through ``restore_tensor`` untiled on the same random image, with the same number of
threads, at ``--precision`` (fp64: PyTorch's float64 path against a ``--double`` export); the
ONNX model is exported first (to a temporary folder) unless ``--onnx`` is given. Reports the
median time, the ratio, the max abs difference of the outputs, how many of the 3 x size^2 uint8
values differ, and the peak resident-set growth (each onnxruntime size gets a fresh session, so
its arena starts empty).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from dcn_speed import PeakMemory

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.export import OnnxRestorer, export_weights
from airnet_restore.image_io import from_float
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import ModelDescriptor, load_model


def timed(model: ModelDescriptor | torch.nn.Module, x: torch.Tensor, repeats: int, precision: str) -> tuple[float, float, torch.Tensor]:
    """(median seconds, peak MB, output) of ``repeats`` untiled restores."""
    times = []
    with PeakMemory(torch.device("cpu")) as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = restore_tensor(model, x, tile=None, precision=precision, postfilter="none")  # both: the network alone
            times.append(time.perf_counter() - t0)
    return statistics.median(times), mem.peak_mb, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024", help="square image sizes, comma list")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp64"])
    parser.add_argument("--onnx", type=Path, help="an exported model (default: export the default variant now)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx
        if path is None:
            t0 = time.perf_counter()
            path = export_weights(DEFAULT_VARIANT, Path(tmp) / "model.onnx", precision=args.precision)
            print(f"exported {DEFAULT_VARIANT} in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.1f} MB)")
        import onnxruntime

        torch_model = load_model(DEFAULT_VARIANT, device="cpu", dcn_impl="numba")
        restore_tensor(torch_model, torch.rand(3, 64, 64), precision=args.precision)  # compile the numba kernel
        print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"{DEFAULT_VARIANT}, {args.precision}, median of {args.repeats}")
        print("| size | PyTorch (numba) s | onnxruntime s | onnxruntime / PyTorch | max abs diff | uint8 values differing "
              "| peak MB PyTorch | peak MB onnxruntime |")
        print("|---|---|---|---|---|---|---|---|")
        for size in sizes:
            x = torch.rand(3, size, size, generator=torch.Generator().manual_seed(size))
            t_torch, mb_torch, ref = timed(torch_model, x, args.repeats, args.precision)
            t_ort, mb_ort, out = timed(OnnxRestorer(path), x, args.repeats, "fp32")
            diff = (out - ref).abs().max().item()
            differing = int((from_float(out.numpy(), np.uint8) != from_float(ref.numpy(), np.uint8)).sum())
            print(f"| {size}x{size} | {t_torch:.2f} | {t_ort:.2f} | {t_ort / t_torch:.2f}x | {diff:.1e} "
                  f"| {differing} of {3 * size * size:,} | {mb_torch:.0f} | {mb_ort:.0f} |", flush=True)


if __name__ == "__main__":
    main()
