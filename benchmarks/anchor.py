"""What the anchor (``--anchor auto``) does, and how its noise model was chosen.

    python data/photo_pool.py --split training       # the photos choices are made on
    python benchmarks/anchor.py data/pool/training --every 6 \\
        --sets clean,noise15,noise25,noise50,noise_any,rain_any,haze_any

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
of three passes. Each variant is a ``PostFilterParams`` record passed with the blend (nothing is patched).
On ``clean`` it also prints the network's tone shift: the mean of (output - photo) per photo, in levels.
``--every N`` keeps every N-th photo. Choose on training photos only (``data/pool/training``).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.evaluate import build_tasks
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.metrics import get_protocol, psnr
from airnet_restore.postfilter import Blend, PostFilterParams


def photo_folder(folder: Path, every: int) -> Path:
    """``folder`` itself, or a temporary folder linking every ``every``-th photo of it."""
    if every == 1:
        return folder
    out = Path(tempfile.mkdtemp(prefix="anchor-photos-"))
    for p in sorted(folder.glob("*.png"))[::every]:
        (out / p.name).symlink_to(p.resolve())
    return out


def variants(params: PostFilterParams) -> list[PostFilterParams]:
    """The noise model's alternatives, in the table's order: 1, 2, 3 and 5 scales; one pass and no second round;
    12x12 DCTs at stride 3; one round; a second round of three passes."""
    w, passes = params.wiener, params.wiener.passes
    with_wiener = lambda **k: dataclasses.replace(params, wiener=dataclasses.replace(w, **k))  # noqa: E731
    return [*(with_wiener(levels=levels) for levels in (0, 1, 2, 4)), dataclasses.replace(params, rounds=(1,)),
            with_wiener(patch=12, stride=3), dataclasses.replace(params, rounds=(passes,)),
            dataclasses.replace(params, rounds=(passes, passes))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--sets", default="clean,noise15,noise25,noise50")
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args()
    model = load_model(args.weights, device="cpu")
    folder = photo_folder(args.photos, args.every)
    print(f"{args.weights}, {len(list(folder.glob('*.png')))} photos of {args.photos}, {args.crop}-px crops; PSNR dB")
    columns = ["input", "network", "strength auto", "default", "no check", "anchor 1", "1 scale", "2 scales",
               "3 scales", "5 scales", "1 pass", "12x12 DCT", "1 round", "round 2 of 3"]
    print("| set | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name in args.sets.split(","):
        for task in build_tasks(name, folder, get_protocol("airnet"), crop=args.crop):
            rows, shifts = [], []
            for degraded, clean in zip(task.degraded, task.clean):
                x = torch.from_numpy(degraded).permute(2, 0, 1).float() / 255
                y = torch.from_numpy(clean).permute(2, 0, 1).float() / 255
                blend = model.postfilter.plan(model.inspect(x))
                p = blend.params
                outputs = [
                    x,
                    restore_tensor(model, x, postfilter="none"),
                    restore_tensor(model, x, blend=Blend(blend.strength, params=p)),
                    restore_tensor(model, x, blend=blend),
                    restore_tensor(model, x, blend=Blend(blend.strength, blend.anchor, blend.noise, params=p)),
                    restore_tensor(model, x, blend=Blend(blend.strength, 1.0, blend.noise, params=p)),
                    *(restore_tensor(model, x, blend=dataclasses.replace(blend, params=v)) for v in variants(p)),
                ]
                rows.append([min(psnr(o[None], y[None]).item(), 99.0) for o in outputs])
                shifts.append((outputs[1] - y).mean().item() * 255)
            means = np.mean(rows, axis=0)
            print(f"| {task.label} | " + " | ".join("-" if m == 99.0 else f"{m:.2f}" for m in means) + " |")
            if task.kind == "clean":
                print(f"network's tone shift per photo (levels): {' '.join(f'{s:+.1f}' for s in shifts)}")


if __name__ == "__main__":
    main()
