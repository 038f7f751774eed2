"""GPU sprint: continue training a variant from its committed state for N minutes, then hand back the result.

Runs from a source checkout on a machine that has torch/torchvision/numba/opencv but not this
package (nor pydantic): missing pure-Python wheels can be given with ``--wheels DIR``. It trains
with bf16 autocast (the deformable convolutions stay in fp32), a batch and crop sized for a GPU,
checkpoints on a timer and on SIGTERM, validates when the time is up, and copies into ``--out``
the few files worth keeping: the training state, best/last safetensors, the log and a summary.

    python training/sprint.py --config configs/general.yaml --resume training/airnet-general-pool/state.pt \\
        --set 'train.freeze=[encoder]' --minutes 7 --out OUT --device cuda --wheels .whl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a GPU changes in a CPU preset (each can be overridden with --set).
GPU_OVERRIDES = ["train.amp=bf16", "data.per_type=4", "data.patch_size=128"]


def ensure_importable(wheels: Path | None) -> None:
    """Make ``airnet_restore`` importable from the source tree, installing missing wheels if given."""
    if importlib.util.find_spec("pydantic") is None and wheels is not None:
        target = Path(tempfile.gettempdir()) / "airnet-sprint-site"
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", str(target), *files], check=True)
        sys.path.insert(0, str(target))
    sys.path.insert(0, str(REPO / "src"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="training preset, e.g. configs/general.yaml")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--resume", help="training state to continue (bit-exact on CPU)")
    start.add_argument("--init", help="weights to start a new run from (variant, safetensors, .pth or training state)")
    p.add_argument("--minutes", type=float, required=True, help="training time; validation and copying come after")
    p.add_argument("--out", required=True, help="folder for state.pt, best/last.safetensors, log.jsonl, sprint.json")
    p.add_argument("--device", default="cuda")
    p.add_argument("--name", default="airnet", help="variant name written into the exported weights")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (after the GPU ones)")
    p.add_argument("--no-gpu-overrides", action="store_true", help=f"keep the preset's values instead of {GPU_OVERRIDES}")
    p.add_argument("--wheels", type=Path, help="folder of wheels for missing pure-Python dependencies (pydantic, ...)")
    args = p.parse_args(argv)
    ensure_importable(args.wheels)

    import torch

    from airnet_restore.train import Trainer, load_config
    from airnet_restore.train.checkpoint import load_state

    started = time.monotonic()
    workers = max(0, min(14, (os.cpu_count() or 2) - 2))
    overrides = [] if args.no_gpu_overrides else [*GPU_OVERRIDES, f"data.workers={workers}"]
    overrides += [f"train.max_minutes={args.minutes}", "train.checkpoint_minutes=2", *args.set]
    if args.init:
        overrides.append(f"train.init={json.dumps(args.init)}")
    config = load_config(args.config, overrides)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
    before = load_state(args.resume)["global_step"] if args.resume else 0
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        trainer = Trainer(config, run_dir, resume=args.resume, device=args.device, progress=False, name=args.name)
        for line in trainer.init_report:
            print(line, flush=True)
        try:
            trainer.run()
        finally:  # whatever happened, keep what was saved
            keep(run_dir, Path(args.out), trainer, {"config": args.config, "overrides": overrides,
                                                    "started_from": args.resume or args.init, "steps_before": before,
                                                    "started": started})
    return 0


def keep(run_dir: Path, out: Path, trainer, summary: dict) -> None:
    """Copy the newest state, the exported weights and the log into ``out``, with a summary."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    states = sorted((run_dir / "checkpoints").glob("state-*.pt"))
    if states:
        shutil.copy2(states[-1], out / "state.pt")
    for name in ("best.safetensors", "last.safetensors", "log.jsonl"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    summary = {
        **{k: v for k, v in summary.items() if k != "started"},
        "device": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else str(trainer.device),
        "torch": torch.__version__,
        "steps_after": trainer.global_step,
        "epoch": trainer.epoch,
        "iteration": trainer.iteration,
        "best_val_psnr": trainer.best,
        "minutes": round((time.monotonic() - summary["started"]) / 60, 2),
    }
    (out / "sprint.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
