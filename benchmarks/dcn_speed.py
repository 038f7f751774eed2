"""Deformable convolution: torchvision vs our implementations, one layer and the whole AirNet.

Everything runs in one process on the same inputs, so ratios are meaningful on a noisy
machine. Reports the median of --repeats runs and the peak memory of each case (CPU:
resident-set growth sampled every 2 ms; CUDA: torch's peak allocation).

    python benchmarks/dcn_speed.py                  # CPU, the machine's threads
    python benchmarks/dcn_speed.py --device cuda    # on a GPU
    python benchmarks/dcn_speed.py --quick          # layers only
    python benchmarks/dcn_speed.py --model-size 1000x1000 --impls numba --no-layers   # the whole model at 1 MP
    python benchmarks/dcn_speed.py --parts --repeats 5   # one layer of the default's width at 1 MP, part by part
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from airnet_restore.memory import tune_allocator
from airnet_restore.models import AirNet, DCNLayer
from airnet_restore.ops import _numba_kernels as kernels
from airnet_restore.ops.deform_conv import INFERENCE_COLS_BYTES, _kernel_inputs, _row_blocks, deform_conv3x3


class PeakMemory:
    """Peak memory growth during a block: CUDA allocator peak, or sampled RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self._rss_mb()
            self.peak = self.base
            self.stop = False
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self._rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.stop = True
            self.thread.join()
            self.peak_mb = self.peak - self.base


def timed(fn, device: torch.device, repeats: int, warmup: bool = True) -> tuple[float, float, object]:
    """(median seconds over ``repeats``, peak memory MB over those runs, last result), after an optional warm-up."""
    if warmup:
        fn()
    times = []
    with PeakMemory(device) as mem:
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return statistics.median(times), mem.peak_mb, result


class PlainConvStandIn(DCNLayer):
    """The bound to approach: the same layer with the deformable conv replaced by a plain conv."""

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        self.conv_offset_mask(torch.cat([x, inter], dim=1))
        return F.conv2d(x, self.weight, padding=1)


def stand_in(model: AirNet) -> AirNet:
    for module in model.modules():
        if isinstance(module, DCNLayer):
            module.__class__ = PlainConvStandIn
    return model


def layer_cases(device: torch.device, impls: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for s in sizes:
        x = torch.randn(1, 64, s, s, generator=g).to(device)
        offset = (torch.randn(1, 18, s, s, generator=g) * 2).to(device)
        mask = torch.rand(1, 9, s, s, generator=g).to(device)
        weight = (torch.randn(64, 64, 3, 3, generator=g) / 24).to(device)
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        cases = {impl: partial(deform_conv3x3, x, offset, mask, weight, impl) for impl in impls}
        cases["conv3x3 (channels_last)"] = partial(conv, x_cl)
        with torch.no_grad():
            for name, fn in cases.items():
                sec, mb, _ = timed(fn, device, repeats)
                rows.append({"case": f"one layer {s}x{s}", "impl": name, "seconds": sec, "peak_mb": mb})
    return rows


def part_cases(channels: int, size: int, repeats: int) -> list[dict]:
    """One modulated deformable layer (numba, inference) of ``channels`` channels on a ``size``^2 map, part by part:
    where the layer's time goes against the plain 3x3 convolution that the stand-in runs in its place (CPU)."""
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(1, channels, size, size, generator=g).contiguous(memory_format=cl)
    inter = torch.randn(1, channels, size, size, generator=g).contiguous(memory_format=cl)
    offset_conv = torch.nn.Conv2d(2 * channels, 27, 3, padding=1).to(memory_format=cl)
    weight = torch.randn(channels, channels, 3, 3, generator=g) / (3 * channels)
    om = (torch.randn(1, 27, size, size, generator=g) * 1.5).contiguous(memory_format=cl)
    offset, mask = om[:, :18], torch.sigmoid(om[:, 18:])
    xs, off, msk, wt, dtype = _kernel_inputs(x, offset, mask, weight)
    blocks = _row_blocks(1, channels, size, size, dtype, INFERENCE_COLS_BYTES)
    cols = torch.empty((blocks.step * size, 9 * channels), dtype=dtype)
    out = torch.empty((size * size, channels), dtype=dtype)
    im2col = kernels.im2col_kernel(channels, xs.dtype, parallel=True)
    kernels.set_threads(torch.get_num_threads())

    def sampling() -> None:
        for y0 in blocks:
            im2col(xs, off, msk, y0, min(blocks.step, size - y0), cols[None].numpy())

    def product() -> None:  # on the last block's columns, as the layer runs it after each block's sampling
        for y0 in blocks:
            n = min(blocks.step, size - y0)
            torch.mm(cols[: n * size], wt, out=out[y0 * size : (y0 + n) * size])

    cases = {
        "offsets and mask: cat + conv3x3 to 27 channels (in the stand-in too)":
            lambda: offset_conv(torch.cat([x, inter], dim=1)),
        "deformable conv, whole (numba: fused sampling and product)": partial(deform_conv3x3, x, offset, mask, weight, "numba"),
        "deformable conv as im2col + torch.mm (training's and bf16's path)": lambda: (sampling(), product()),
        "  its sampling (im2col kernel)": sampling,
        "  its product (torch.mm per row block)": product,
        "plain conv3x3 (the stand-in's, channels_last)": partial(F.conv2d, x, weight, padding=1),
    }
    rows = []
    with torch.no_grad():
        for name, fn in cases.items():
            sec, mb, _ = timed(fn, torch.device("cpu"), repeats)
            rows.append({"case": f"one layer parts {channels} ch {size}x{size}", "impl": name, "seconds": sec, "peak_mb": mb})
    return rows


def model_cases(device: torch.device, impls: list[str], sizes: list[tuple[int, int]], repeats: int) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    model = AirNet().eval().to(device)
    with torch.no_grad():  # random offsets, so the DCN really deforms
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name:
                p.normal_(0.0, 0.01)
    plain = stand_in(AirNet().eval()).to(device).to(memory_format=torch.channels_last)
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            reference = None
            for impl in impls:
                # The fused CPU kernel returns channels-last maps; the convolutions around it
                # are fastest in that layout too. torchvision runs in its best (default) layout.
                layout = torch.channels_last if impl == "numba" else torch.contiguous_format
                model.set_dcn_impl(impl).to(memory_format=layout)
                xi = x.contiguous(memory_format=layout)
                model(xi[..., :32, :32])  # compiles the numba kernel, warms caches
                sec, mb, out = timed(partial(model, xi), device, repeats, warmup=False)
                reference = out if reference is None else reference
                err = (out - reference).abs().max().item()
                name = f"{impl} (channels_last)" if layout == torch.channels_last else impl
                rows.append({"case": f"AirNet forward {h}x{w}", "impl": name, "seconds": sec, "peak_mb": mb, "max_abs_diff": err})
            x_cl = x.contiguous(memory_format=torch.channels_last)
            plain(x_cl[..., :32, :32])
            sec, mb, _ = timed(partial(plain, x_cl), device, repeats, warmup=False)
            rows.append({"case": f"AirNet forward {h}x{w}", "impl": "plain-conv stand-in (channels_last)", "seconds": sec, "peak_mb": mb})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="single layers only")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--model-size", action="append", metavar="HxW",
                        help="the whole model at this size instead of 256x256 and 321x481 (repeatable)")
    parser.add_argument("--impls", help="comma list of DCN implementations (default: torchvision and the fast ones)")
    parser.add_argument("--no-layers", action="store_true", help="the whole model only")
    parser.add_argument("--parts", action="store_true",
                        help="only one layer of the default's width at 1 MP, part by part (CPU; --parts-channels/--parts-size)")
    parser.add_argument("--parts-channels", type=int, default=24)
    parser.add_argument("--parts-size", type=int, default=1000)
    args = parser.parse_args()
    tune_allocator()
    device = torch.device(args.device)
    fast = ["numba", "grid_sample"] if device.type == "cpu" else ["grid_sample"]
    impls = args.impls.split(",") if args.impls else ["torchvision", *fast]
    model_sizes = ([tuple(int(v) for v in size.lower().split("x")) for size in args.model_size] if args.model_size
                   else [(256, 256), (321, 481)])
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}")
    if args.parts:
        rows = part_cases(args.parts_channels, args.parts_size, args.repeats)
    else:
        rows = [] if args.no_layers else layer_cases(device, impls, [256, 512], args.repeats)
    if not args.quick and not args.parts:
        rows += model_cases(device, impls, model_sizes, args.model_repeats)
    base = {r["case"]: r["seconds"] for r in rows if r["impl"] == "torchvision"}
    bound = {r["case"]: r["seconds"] for r in rows if r["impl"].startswith(("plain", "conv3x3"))}
    print("| case | implementation | median s | speed-up vs torchvision | time / plain conv | peak MB | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = base[r["case"]] / r["seconds"] if r["case"] in base else float("nan")
        r["vs_plain_conv"] = r["seconds"] / bound[r["case"]]
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
        speedup = f"{r['speedup']:.2f}x" if r["case"] in base else "-"
        print(f"| {r['case']} | {r['impl']} | {r['seconds']:.4f} | {speedup} | {r['vs_plain_conv']:.2f}x | {r['peak_mb']:.0f} | {diff} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
