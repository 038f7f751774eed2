"""Train the haze map (``airnet_restore.models.hazemap``) on the training photos' synthetic haze.

    python data/photo_pool.py --split training
    python training/hazemap.py data/pool/training hazemap-v1.safetensors     # 5.5 minutes on 2 CPU cores

Each photo gives ``--crops`` 256-px crops at random scales (its short side shrunk to 256-900 px), each with
three hazy versions: two of ``haze_any`` (the general family: depth from several proxies, uneven density,
coloured airlight, mixed in stored or in linear values) and one of ``haze`` (RESIDE-OTS-like). A step takes
16 crops, a quarter of them clean (the map must leave a clean photo alone), cut again to 128-256 px so the
scale the network sees varies, and minimises the L1 distance of ``map(hazy)`` to the clean crop (Adam,
one-cycle learning rate up to 2e-3). Everything is seeded: the same photos give the same weights on the same
CPU build. The held-out protocol's haze (``ho_haze``) is not trained on: it is the check of generalization
(``reports/haze-map/README.md``). The output is float16 safetensors, as bundled in
``src/airnet_restore/assets/`` (``hazemap-v1`` is this script's output with the defaults, bit for bit on
the CPU it was made on).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from airnet_restore.data.aio import load_rgb8
from airnet_restore.degradations import add_haze, haze_any
from airnet_restore.models.hazemap import HazeMap

CROP = 256
BATCH = 16


def crops(folder: Path, per_photo: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,256,256,3) clean crops and (N,3,256,256,3) hazy versions of them, uint8."""
    cleans, hazy = [], []
    for path in sorted(folder.glob("*.png")):
        img = load_rgb8(path)
        h, w = img.shape[:2]
        for _ in range(per_photo):
            short = min(h, w)
            scale = rng.uniform(CROP, max(CROP + 1, min(short, 900))) / short
            im = img
            if scale < 1:
                im = cv2.resize(img, (max(CROP, round(w * scale)), max(CROP, round(h * scale))), interpolation=cv2.INTER_AREA)
            y = rng.integers(0, im.shape[0] - CROP + 1)
            x = rng.integers(0, im.shape[1] - CROP + 1)
            c = np.ascontiguousarray(im[y : y + CROP, x : x + CROP])
            if rng.random() < 0.5:
                c = c[:, ::-1].copy()
            cleans.append(c)
            hazy.append(np.stack([haze_any(c, rng), haze_any(c, rng), add_haze(c, rng)]))
    return torch.from_numpy(np.stack(cleans)), torch.from_numpy(np.stack(hazy))


def train(clean: torch.Tensor, hazy: torch.Tensor, steps: int, p_clean: float, seed: int) -> HazeMap:
    """The map after ``steps`` steps on the crops (see the module's docstring)."""
    torch.manual_seed(seed)
    net = HazeMap()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    n = clean.shape[0]
    start, running = time.perf_counter(), 0.0
    for step in range(steps):
        idx = torch.randint(0, n, (BATCH,), generator=g)
        which = torch.randint(0, hazy.shape[1], (BATCH,), generator=g)
        keep = torch.rand(BATCH, generator=g) < p_clean
        target = clean[idx].permute(0, 3, 1, 2).float() / 255
        inp = torch.where(keep[:, None, None, None], target, hazy[idx, which].permute(0, 3, 1, 2).float() / 255)
        size = int(torch.randint(CROP // 2, CROP + 1, (1,), generator=g))
        y = int(torch.randint(0, CROP + 1 - size, (1,), generator=g))
        x = int(torch.randint(0, CROP + 1 - size, (1,), generator=g))
        loss = F.l1_loss(net(inp[..., y : y + size, x : x + size]), target[..., y : y + size, x : x + size])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step} loss {running:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path, help="folder of training photos (PNG)")
    ap.add_argument("out", type=Path, help="the weights to write (.safetensors, float16)")
    ap.add_argument("--crops", type=int, default=8, help="crops per photo")
    ap.add_argument("--steps", type=int, default=600, help="600: hazemap-v1 (3000 changed clean photos more)")
    ap.add_argument("--clean", type=float, default=0.25, help="share of clean crops in a batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clean, hazy = crops(args.photos, args.crops, np.random.default_rng(args.seed))
    print(f"{clean.shape[0]} crops from {args.photos}", flush=True)
    net = train(clean, hazy, args.steps, args.clean, args.seed)
    meta = {"what": "haze map (airnet_restore.models.hazemap)", "photos": str(args.photos),
            "recipe": json.dumps({"crops": args.crops, "steps": args.steps, "clean": args.clean, "seed": args.seed})}
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(args.out), metadata=meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
