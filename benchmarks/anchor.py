"""What the anchor (``--anchor auto``) does, and how its noise model was chosen.

    python benchmarks/anchor.py ../shared/data/photos --skip-from configs/general.yaml --every 3 \\
        --sets clean,noise15,noise25,noise50,noise_any,rain_any,haze_any
    python benchmarks/anchor.py runs/heldout-photos --sets clean,ho_noise15,ho_noise25,ho_noise50

Per set (``airnet eval``'s pairs: centre crops, degradations from seed 0), the mean PSNR against
the clean crop of: the input; the network alone (strength 1, anchor 0); strength auto without
the anchor (v3's default); the default blend (strength and anchor auto: the noise model's
Wiener estimate, three passes of 8x8 DCTs at stride 2 at four scales, then one more pass at each
guided by that estimate, the anchor from the detectors
and the check of the network's output); the default with the detectors' anchor alone (no check),
and with the anchor at 1 (the noise model's estimate wherever noise is found; neither with v7's
second pass on mixtures); the default with
the noise model at one scale (v6), two, three and five; with one pass and no second round, with 12x12 DCTs at stride
3; with one round (v8: no further pass guided by the first round's estimate) and with a second round
of three passes; and without the clipping correction (the input filtered as it is; the check then also reads the
residual without it). On ``clean`` it also prints the network's tone shift: the mean of (output - photo) per
photo, in levels.
``--skip-from PRESET`` leaves out the preset's validation photos (so only training photos are
used, for choosing the noise model); ``--every N`` keeps every N-th photo of the rest.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.evaluate import build_tasks
from airnet_restore.inference import blend as blend_module
from airnet_restore.inference import wiener as wiener_module
from airnet_restore.inference.blend import Blend, resolve_blend
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.metrics import get_protocol, psnr
from airnet_restore.models import AirNet
from airnet_restore.train.config import load_config
from airnet_restore.variants import load_model


def photo_folder(folder: Path, skip_from: Path | None, every: int) -> Path:
    """``folder`` itself, or a temporary folder linking every ``every``-th photo not validated on by ``skip_from``."""
    if skip_from is None and every == 1:
        return folder
    skip = set(load_config(skip_from).val.files) if skip_from else set()
    chosen = [p for p in sorted(folder.glob("*.png")) if p.name not in skip][::every]
    out = Path(tempfile.mkdtemp(prefix="anchor-photos-"))
    for p in chosen:
        (out / p.name).symlink_to(p.resolve())
    return out


def restore_with(model: AirNet, x: torch.Tensor, blend: Blend, module: object, **values: object) -> torch.Tensor:
    """``x`` restored with ``blend`` while ``module``'s globals are set to ``values``."""
    old = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    wiener_module._bases.cache_clear()
    try:
        return restore_tensor(model, x, blend=blend)
    finally:
        for name, value in old.items():
            setattr(module, name, value)
        wiener_module._bases.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--sets", default="clean,noise15,noise25,noise50")
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--skip-from", type=Path, help="a training preset whose validation photos are left out")
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args()
    model = load_model(args.weights, device="cpu")
    folder = photo_folder(args.photos, args.skip_from, args.every)
    print(f"{args.weights}, {len(list(folder.glob('*.png')))} photos of {args.photos}, {args.crop}-px crops; PSNR dB")
    columns = ["input", "network", "strength auto", "default", "no check", "anchor 1", "1 scale", "2 scales",
               "3 scales", "5 scales", "1 pass", "12x12 DCT", "1 round", "round 2 of 3", "no clipping"]
    print("| set | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name in args.sets.split(","):
        for task in build_tasks(name, folder, get_protocol("airnet"), crop=args.crop):
            rows, shifts = [], []
            for degraded, clean in zip(task.degraded, task.clean):
                x = torch.from_numpy(degraded).permute(2, 0, 1).float() / 255
                y = torch.from_numpy(clean).permute(2, 0, 1).float() / 255
                blend, _ = resolve_blend(model, x)
                outputs = [
                    x,
                    restore_tensor(model, x, strength=1.0, anchor=0.0),
                    restore_tensor(model, x, blend=Blend(blend.strength)),
                    restore_tensor(model, x, blend=blend),
                    restore_tensor(model, x, blend=Blend(blend.strength, blend.anchor, blend.noise)),
                    restore_tensor(model, x, blend=Blend(blend.strength, 1.0, blend.noise)),
                    *(restore_with(model, x, blend, wiener_module, LEVELS=levels) for levels in (0, 1, 2, 4)),
                    restore_with(model, x, blend, blend_module, ROUND_PASSES=(1,)),
                    restore_with(model, x, blend, wiener_module, PATCH=12, STRIDE=3),
                    *(restore_with(model, x, blend, blend_module, ROUND_PASSES=passes)
                      for passes in ((wiener_module.PASSES,), (wiener_module.PASSES,) * 2)),
                    restore_with(model, x, blend, blend_module, clipped_noise_mean=lambda t, _sigma: t),
                ]
                rows.append([min(psnr(o[None], y[None]).item(), 99.0) for o in outputs])
                shifts.append((outputs[1] - y).mean().item() * 255)
            means = np.mean(rows, axis=0)
            print(f"| {task.label} | " + " | ".join("-" if m == 99.0 else f"{m:.2f}" for m in means) + " |")
            if task.kind == "clean":
                print(f"network's tone shift per photo (levels): {' '.join(f'{s:+.1f}' for s in shifts)}")


if __name__ == "__main__":
    main()
