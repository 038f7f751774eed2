"""What the default's calls cost on photos with noise alone: the blend it plans against anchoring to the noise model.

    python benchmarks/noise_calls.py PHOTO_DIR [--every 3] [--sigmas 15 25] [--crop 256] [--weights airnet-general-v8]

For every ``--every``-th photo of ``PHOTO_DIR`` (sorted; use ``data/pool/training`` or ``data/pool/validation``,
never a held-out split), its centre ``--crop`` square gets white Gaussian noise of each sigma (the held-out
protocol's ``ho_noise``, seeded by the photo's index), and is restored three ways:

- ``default``: ``restore_tensor`` as ``airnet restore`` runs it (strength and anchor auto);
- ``s1 a1``: strength 1 and anchor 1, the noise model's estimate with the detected sigma (what the default
  gives where the detectors find noise alone and are sure of it);
- ``W(true)``: the noise model's estimate with the true sigma, guided by the network's output.

Printed per image: the detected sigma, the planned strength and anchor, the detectors' rain and haze
probabilities, and the PSNR (dB, RGB, the whole crop) of the input and the three outputs; then, per sigma, the means, and how many
images the default leaves more than 1 dB below ``s1 a1``, with their haze and rain calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.data.aio import load_rgb8
from airnet_restore.degradations.heldout import ho_noise
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.memory import tune_allocator
from airnet_restore.metrics import centre_crop, psnr
from airnet_restore.postfilter.stage import noise_estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    args = parser.parse_args()
    tune_allocator()
    desc = load_model(args.weights, device="cpu")
    params = desc.postfilter.params
    names = ("input", "default", "s1 a1", "W(true)")
    scores: dict[float, list[tuple[float, ...]]] = {s: [] for s in args.sigmas}
    calls: dict[float, list[tuple[str, float, float]]] = {s: [] for s in args.sigmas}
    for index, path in enumerate(sorted(args.photos.glob("*.png"))):
        if index % args.every:
            continue
        crop = centre_crop(torch.from_numpy(load_rgb8(path)).permute(2, 0, 1), args.crop, args.crop)
        clean = crop.permute(1, 2, 0).contiguous().numpy()
        reference = crop.float() / 255
        for sigma in args.sigmas:
            x = torch.from_numpy(ho_noise(clean, np.random.default_rng(index), sigma)).permute(2, 0, 1).float() / 255
            found = desc.inspect(x)
            blend = desc.postfilter.plan(found)
            with torch.no_grad():
                pilot = desc.network(x[None]).clamp(0, 1)
            outputs = (x, restore_tensor(desc, x), restore_tensor(desc, x, strength=1.0, anchor=1.0),
                       noise_estimate(x[None], pilot, sigma / 255, params)[0].clamp(0, 1))
            row = tuple(float(psnr(out[None], reference[None])) for out in outputs)
            scores[sigma].append(row)
            rain, haze = (found.presence.get(k, 0.0) for k in ("rain", "haze")) if found else (0.0, 0.0)
            if row[2] - row[1] > 1.0:
                calls[sigma].append((path.name, rain, haze))
            sigma_found = found.sigma if found and found.sigma is not None else 0.0
            print(f"{path.name[:36]:36s} sigma {sigma:4g} found {sigma_found:5.1f} strength {blend.strength:.2f} "
                  f"anchor {blend.anchor:.2f} rain {rain:.2f} haze {haze:.2f} | "
                  + " ".join(f"{n} {v:.2f}" for n, v in zip(names, row)), flush=True)
    for sigma, rows in scores.items():
        means = np.mean(np.array(rows), axis=0)
        print(f"\nsigma {sigma:g}, {len(rows)} images, mean PSNR: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, means)))
        print(f"the default more than 1 dB below s1 a1 on {len(calls[sigma])}: "
              + "; ".join(f"{n} (rain {r:.2f}, haze {h:.2f})" for n, r, h in calls[sigma]))


if __name__ == "__main__":
    main()
