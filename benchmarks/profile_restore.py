"""Where the default restore of a photo spends its time, and how much memory a whole-image forward takes.

    python benchmarks/profile_restore.py [--size 1000] [--repeats 3]      # the profile table
    python benchmarks/profile_restore.py --memory 0.25,0.5,1,2            # peak RSS of whole forwards
    python benchmarks/profile_restore.py --ceiling                        # tile auto before issue 35 and now

The profile: a noisy (sigma 25, seeded) photo, scikit-image's astronaut resized to ``--size``
square, restored with the default weights as ``airnet restore`` does, part by part: start-up (a
fresh interpreter importing the pipeline), the weights (their sha256 check, then the load), reading
the PNG, the detectors (``ModelDescriptor.inspect``), the network tiled as ``tile="auto"`` picks it
with the settings before issue 35 (a 0.6 GiB ceiling, 48 bytes per pixel and channel) and as it picks it now, the network on
the whole image through the tiler and as one plain ``model.network(x)`` call, the post-filter's check
(``image_residual_sums``), its noise model (``noise_estimate_crops``), the rain band's shape judgement
(``rain.elongation``, which the default record does not use), the haze band with the haze map (airnet-general-v14's), the whole ``finish`` with the mix, writing the PNG, and ``restore_image`` end to end. The network variants are interleaved and
repeated; medians are printed.

``--memory``: for each size in megapixels a fresh process loads the default weights, warms up on a
64x64 image, then runs one whole-image forward as the pipeline does (no_grad, channels-last, the
tuned allocator); the peak resident set (VmHWM) over the resident set before the forward, per pixel
and per feature channel, is the CPU constant of ``constants.BYTES_PER_PIXEL_PER_CHANNEL``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The tiler's CPU settings before issue 35: a 0.6 GiB ceiling and 48 bytes per pixel and channel.
OLD_CEILING = 0.6 * 2**30
OLD_PER_CHANNEL = 48


def proc_status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def forward_rss(megapixels: float) -> None:
    """One whole-image forward of the default weights; prints pixels, RSS before and peak RSS (bytes)."""
    import torch

    from airnet_restore.inference.pipeline import _forward
    from airnet_restore.loading import default_model

    desc = default_model("cpu")
    forward, _ = _forward(desc, "fp32")
    forward(torch.rand(1, 3, 64, 64))
    side = round((megapixels * 1e6) ** 0.5)
    x = torch.rand(1, 3, side, side)
    before = proc_status("VmRSS")
    forward(x)
    print(side * side, before, proc_status("VmHWM"), desc.variant.config.n_feats)


def memory(sizes: list[float]) -> None:
    """Peak RSS of whole-image forwards, each in a fresh process; the bytes per pixel per channel."""
    print("| megapixels | side | RSS before (GB) | peak RSS (GB) | forward peak (GB) | bytes per pixel | per pixel per channel |")
    print("|---|---|---|---|---|---|---|")
    for mp in sizes:
        out = subprocess.run([sys.executable, __file__, "--forward-rss", str(mp)], capture_output=True, text=True, check=True)
        pixels, before, peak, channels = (int(v) for v in out.stdout.split()[-4:])
        extra = peak - before
        print(f"| {pixels / 1e6:.2f} | {round(pixels**0.5)} | {before / 1e9:.2f} | {peak / 1e9:.2f} | {extra / 1e9:.2f} | "
              f"{extra / pixels:.0f} | {extra / pixels / channels:.1f} |", flush=True)


def noisy_photo(size: int) -> np.ndarray:
    """The astronaut, ``size`` square, with seeded Gaussian noise of sigma 25 (uint8)."""
    import cv2
    from skimage import data

    photo = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    noise = np.random.default_rng(0).normal(0.0, 25.0, photo.shape)
    return np.clip(photo + noise, 0, 255).round().astype(np.uint8)


def startup_seconds() -> float:
    """Wall time of a fresh interpreter importing the restore pipeline and the loader."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import airnet_restore.inference.pipeline, airnet_restore.loading"], check=True)
    return time.perf_counter() - t0


def profile(size: int, repeats: int) -> None:
    """The table of parts of one default restore (medians of ``repeats``, the network variants interleaved)."""
    import torch

    from airnet_restore.constants import DEFAULT_VARIANT
    from airnet_restore.image_io import read_image, write_image
    from airnet_restore.inference import tiling
    from airnet_restore.inference.pipeline import _forward, _pixel_crop, restore_image
    from airnet_restore.loading import load_model
    from airnet_restore.postfilter.haze import dehaze_tensor
    from airnet_restore.postfilter.params import HazeSettings
    from airnet_restore.postfilter.rain import elongation
    from airnet_restore.postfilter.stage import image_residual_sums, noise_estimate_crops
    from airnet_restore.variants import VARIANTS

    rows: dict[str, list[float]] = {}
    # airnet-general-v14's band, its dark-channel check passed whatever the photo: the cost where it works
    haze_map = HazeSettings(enabled=True, map="hazemap-v1", max_clipped=1.0, hazy_dark=(0.0, 1e-6))

    def add(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)

    def lap(name: str, t0: float) -> float:
        """Records the time since ``t0`` under ``name``; returns the time now."""
        now = time.perf_counter()
        add(name, now - t0)
        return time.perf_counter()

    for _ in range(repeats):
        add("start-up: a fresh interpreter imports the pipeline", startup_seconds())
    variant = VARIANTS[DEFAULT_VARIANT]
    for _ in range(repeats):
        t0 = time.perf_counter()
        variant.checked_weights()
        t0 = lap("weights: sha256 check", t0)
        desc = load_model(DEFAULT_VARIANT, device="cpu")
        lap("weights: load_model (the check included)", t0)
    photo = noisy_photo(size)
    folder = Path(tempfile.mkdtemp())
    src, dst = folder / "noisy.png", folder / "out.png"
    import cv2

    cv2.imwrite(str(src), photo[:, :, ::-1])
    network, device = _forward(desc, "fp32")
    network(torch.rand(1, 3, 64, 64))  # compiles the numba kernel
    h, w = photo.shape[:2]
    crop = _pixel_crop(photo, desc.min_side)
    now = tiling.auto_tile_size(h, w, desc.bytes_per_pixel(device), device)
    before = old_tile(h, w, desc.variant.config.n_feats)

    def through_tiler(tile: tiling.TileShape | None, source: tiling.Crop = crop) -> torch.Tensor:
        """The network's output over the image given by ``source``, clipped, as the pipeline assembles it."""
        out = torch.empty(1, 3, h, w)
        for y0, band in tiling.tiled_bands(network, source, h, w, device, tile, 64):
            out[:, :, y0 : y0 + band.shape[2]] = band
        return out.clamp_(0, 1)

    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    found = None
    blend = desc.postfilter.plan(found)
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = read_image(src)
        t0 = lap("I/O: read the PNG", t0)
        found = desc.inspect(photo)
        t0 = lap("detectors: ModelDescriptor.inspect", t0)
        blend = desc.postfilter.plan(found, detectors=desc.detects)
        t0 = lap("post-filter: plan", t0)
        through_tiler(before)
        t0 = lap(f"network: tile auto as before issue 35 ({_tile_name(before)})", t0)
        through_tiler(now)
        t0 = lap(f"network: tile auto now ({_tile_name(now)})", t0)
        out = through_tiler(None)
        t0 = lap("network: whole image through the tiler (tile=None)", t0)
        with torch.no_grad():
            desc.network(x)
        t0 = lap("network: one plain model.network(x) call", t0)
        sums = image_residual_sums(crop, out, blend.sigma, blend.params)
        t0 = lap("post-filter: the check (image_residual_sums)", t0)
        settled = blend.settle(sums) if not blend.settled else blend
        filter_side = tiling.filter_tile(h, w, settled.params.context, settled.params.wiener.alignment)
        noise_estimate_crops(crop, out, settled.sigma, settled.params, filter_side)
        t0 = lap("post-filter: noise model (noise_estimate_crops)", t0)
        elongation(crop, out, settled.params.rain)
        t0 = lap("post-filter: the rain band's shape judgement (rain.elongation; without noise, where a record enables it)", t0)
        dehaze_tensor(out, x, 1.0, haze_map)
        t0 = lap("post-filter: the haze band with the haze map (haze.dehaze_tensor, confidence 1; where a record enables it)", t0)
        list(desc.postfilter.finish(blend, crop, out.clone(), lambda source: through_tiler(now, source), filter_side,
                                    desc.inspect)[1])
        t0 = lap("post-filter: finish and mix, all bands (the two above included)", t0)
        write_image(dst, data, photo)
        t0 = lap("I/O: write the PNG", t0)
        restore_image(desc, photo)
        lap(f"restore_image end to end (tile auto now: {_tile_name(now)})", t0)
    print(f"{size}x{size} astronaut, sigma 25; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f} at the end; found {found}; blend {blend}; median of {repeats}")
    print("| part | median s | runs |")
    print("|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.3f} | {', '.join(f'{t:.2f}' for t in times)} |")


def old_tile(height: int, width: int, channels: int) -> tuple[int, int] | None:
    """The tile ``tile="auto"`` picked on this machine with the settings before issue 35."""
    import torch

    from airnet_restore.inference import tiling

    saved = tiling.CPU_FORWARD_BYTES
    tiling.CPU_FORWARD_BYTES = OLD_CEILING
    try:
        return tiling.auto_tile_size(height, width, OLD_PER_CHANNEL * channels, torch.device("cpu"))
    finally:
        tiling.CPU_FORWARD_BYTES = saved


def ceiling(size: int, repeats: int) -> None:
    """``restore_tensor`` of the noisy photo with tile auto as picked before issue 35 and now, interleaved."""
    import torch

    from airnet_restore.inference import tiling
    from airnet_restore.inference.pipeline import restore_tensor
    from airnet_restore.loading import default_model

    desc = default_model("cpu")
    x = torch.from_numpy(noisy_photo(size)).permute(2, 0, 1).float() / 255
    restore_tensor(desc, x[:, :64, :64])
    before = old_tile(size, size, desc.variant.config.n_feats)
    now = tiling.auto_tile_size(size, size, desc.bytes_per_pixel(torch.device("cpu")), torch.device("cpu"))
    times: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(repeats):
        for name, tile in (("before", before), ("now", now)):
            t0 = time.perf_counter()
            restore_tensor(desc, x, tile=tile if tile is None else max(tile))  # what tile="auto" picks
            times[name].append(time.perf_counter() - t0)
    old, new = (statistics.median(times[k]) for k in ("before", "now"))
    print(f"{size}x{size} noisy astronaut, restore_tensor with the post-filter auto, median of {repeats} interleaved; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print("| tile auto | tiles | median s | runs |")
    print("|---|---|---|---|")
    print(f"| before issue 35 (0.6 GiB, 48 B per pixel and channel) | {_tile_name(before)} | {old:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in times['before'])} |")
    print(f"| now | {_tile_name(now)} | {new:.2f} | {', '.join(f'{t:.2f}' for t in times['now'])} |")
    print(f"before / now: {old / new:.3f}x")


def _tile_name(tile: tuple[int, int] | None) -> str:
    return "whole" if tile is None else f"{tile[0]}x{tile[1]} tiles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ceiling", action="store_true", help="only restore_tensor with tile auto before and now")
    parser.add_argument("--memory", help="comma list of megapixels: peak RSS of a whole forward at each")
    parser.add_argument("--forward-rss", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.forward_rss is not None:
        forward_rss(args.forward_rss)
    elif args.ceiling:
        ceiling(args.size, args.repeats)
    elif args.memory:
        memory([float(v) for v in args.memory.split(",")])
    else:
        profile(args.size, args.repeats)


if __name__ == "__main__":
    main()
