"""Is an int8 onnxruntime export worth offering? Speed against the float32 export and PSNR on validation crops.

    python benchmarks/onnx_int8.py [--onnx default.onnx] [--size 384] [--rounds 3] [--crops 6] [--crop 256]

Quantizes a float32 export (default: the default variant, exported now) with onnxruntime's quantization tools:
``dynamic`` (Conv weights uint8, activations quantized at run time: ConvInteger) and ``static`` (QDQ, Conv weights
and activations int8 per channel, calibrated on validation crops that are then left out of the scores). The
deformable convolutions stay float32 in both (onnxruntime has no quantized DeformConv). Then, in one process:

- speed: one forward of the same ``--size`` square through each session, in interleaved rounds; medians and each
  variant's ratio to float32 round by round;
- quality: the network alone (``postfilter="none"``, whole crops) on ``--crops`` crops of ``data/pool/validation``
  per condition (noise25, rain, haze from ``airnet_restore.degradations``), mean PSNR against the clean crop, and
  the change from float32.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.degradations import get_degradation
from airnet_restore.export import OnnxRestorer, export_weights

VALIDATION = Path(__file__).resolve().parents[1] / "data" / "pool" / "validation"
CONDITIONS = ("noise25", "rain", "haze")


def crops(n: int, size: int, skip: int = 0) -> list[np.ndarray]:
    """Centre crops of the validation photos, in name order, from the ``skip``-th on."""
    out = []
    for path in sorted(VALIDATION.glob("*.png"))[skip:]:
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        if min(h, w) < size:
            continue
        y, x = (h - size) // 2, (w - size) // 2
        out.append(img[y : y + size, x : x + size])
        if len(out) == n:
            break
    return out


def to_input(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


def psnr(out: np.ndarray, clean: np.ndarray) -> float:
    """PSNR of the network's output, clamped and rounded to uint8 as a restore writes it, against the clean crop."""
    restored = np.clip(np.round(np.clip(out[0].transpose(1, 2, 0), 0, 1) * 255), 0, 255)
    mse = np.mean((restored - clean.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="a float32 export (default: export the default variant now)")
    parser.add_argument("--size", type=int, default=384, help="square input of the speed rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crops", type=int, default=6, help="validation crops per condition")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--calibration", type=int, default=4, help="validation photos (left out of the scores)")
    args = parser.parse_args()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        """Calibration batches for ``quantize_static``: degraded crops, one at a time."""

        def __init__(self, name: str, images: list[np.ndarray]) -> None:
            self.name, self.items = name, iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            img = next(self.items, None)
            return None if img is None else {self.name: to_input(img)}

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = args.onnx or export_weights(DEFAULT_VARIANT, Path(tmp) / "fp32.onnx")
        rng = np.random.default_rng(0)
        calib_clean = crops(args.calibration, args.crop)
        calib = [get_degradation(c)(img, rng) for img in calib_clean for c in CONDITIONS]
        paths = {"fp32": fp32, "int8 dynamic": Path(tmp) / "dyn.onnx", "int8 static": Path(tmp) / "static.onnx"}
        t0 = time.perf_counter()
        quantize_dynamic(fp32, paths["int8 dynamic"], op_types_to_quantize=["Conv"], weight_type=QuantType.QUInt8)
        print(f"dynamic quantization {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        quantize_static(fp32, paths["int8 static"], Reader("input", calib), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        print(f"static quantization {time.perf_counter() - t0:.1f} s ({len(calib)} calibration crops)", flush=True)
        nets = {name: OnnxRestorer(path) for name, path in paths.items()}
        import onnxruntime

        print(f"{torch.get_num_threads()} threads, onnxruntime {onnxruntime.__version__}; "
              f"sizes MB: {', '.join(f'{k} {Path(p).stat().st_size / 1e6:.1f}' for k, p in paths.items())}")

        x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.size))
        for net in nets.values():
            net(x[..., :64, :64])  # warm-up
        times: dict[str, list[float]] = {k: [] for k in nets}
        for r in range(args.rounds):
            for name, net in nets.items():
                t0 = time.perf_counter()
                net(x)
                times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        print(f"\n| {args.size}x{args.size} forward | median s | / fp32 by round |\n|---|---|---|")
        for name, ts in times.items():
            ratios = ", ".join(f"{t / f:.2f}" for t, f in zip(ts, times["fp32"]))
            print(f"| {name} | {statistics.median(ts):.2f} | {ratios} |")

        scored = crops(args.crops, args.crop, skip=args.calibration)
        rng = np.random.default_rng(1)
        print(f"\n| condition ({len(scored)} crops of {args.crop} px) | input | "
              + " | ".join(nets) + " | " + " | ".join(f"{k} - fp32" for k in list(nets)[1:]) + " |")
        print("|---" * (2 + 2 * len(nets) - 1) + "|")
        for cond in CONDITIONS:
            scores: dict[str, list[float]] = {k: [] for k in ("input", *nets)}
            for clean in scored:
                noisy = get_degradation(cond)(clean, rng)
                scores["input"].append(psnr(to_input(noisy), clean))
                for name, net in nets.items():
                    scores[name].append(psnr(net(torch.from_numpy(to_input(noisy))).numpy(), clean))
            mean = {k: float(np.mean(v)) for k, v in scores.items()}
            print(f"| {cond} | {mean['input']:.2f} | " + " | ".join(f"{mean[k]:.2f}" for k in nets) + " | "
                  + " | ".join(f"{mean[k] - mean['fp32']:+.3f}" for k in list(nets)[1:]) + " |", flush=True)


if __name__ == "__main__":
    main()
