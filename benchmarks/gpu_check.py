"""One prepared check of everything that differs on a GPU; writes DIR/gpu_check.md and DIR/gpu_check.json.

    PYTHONPATH=src python benchmarks/gpu_check.py OUT                  # CUDA if present, else CPU
    PYTHONPATH=src python benchmarks/gpu_check.py OUT --device cpu     # dry run: CUDA-only parts skipped
    PYTHONPATH=src python benchmarks/gpu_check.py OUT --quick          # smaller sizes, fewer repetitions

Sections: environment; DCN parity against a float64 CPU reference (fp32 with TF32 off/on,
fp64, bf16/fp16 autocast, gradients); restore of the bundled sample in fp32/fp16/bf16 against
the CPU; tiled vs whole and a forced out-of-memory that recovers; peak memory per pixel (the
constant that sizes tiles); smoke training with amp none/bf16/fp16 and an EMA resume; two
processes through DDP (gloo); DCN and restore speed. Each section records pass, fail or skip
with a reason and its time; a failing section never stops the others. Needs no network.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from airnet_restore.constants import bytes_per_pixel_per_channel
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.metrics import psnr
from airnet_restore.models import AirNet
from airnet_restore.ops.deform_conv import deform_conv3x3
from airnet_restore.variants import get_variant, sample_image

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
PACKAGES = ("torch", "torchvision", "numpy", "numba", "opencv-python-headless", "safetensors", "pillow", "tqdm",
            "PyYAML", "pydantic", "tensorboard")
RESTORE_MIN_PSNR = 50.0
TILED_MIN_PSNR = 60.0
# Parity tolerances: max |out - ref| / max |ref| against a float64 CPU torchvision reference.
PARITY_TOL = {"fp64": 1e-9, "fp32": 1e-4, "fp32+tf32": 5e-3, "bf16 autocast": 5e-2, "fp16 autocast": 1e-2}


class Skip(Exception):
    """A section (or case) that does not apply here; the message says why."""


class Failed(Exception):
    """A check that ran and did not hold; the message says which."""


def one_line(e: BaseException) -> str:
    """The error in one line; for an error re-raised from a worker process, the worker's last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[-1] if "Traceback" in str(e) else lines[0] if lines else ""
    return f"{type(e).__name__}: {text}"[:300]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; any exception becomes a recorded failure so the next section still runs."""
    print(f"[gpu_check] {name} ...", flush=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": name}
    try:
        details = fn()
        record.update(status="fail" if details.pop("failed", None) else "pass", reason=details.pop("reason", ""),
                      details=details)
    except Skip as e:
        record.update(status="skip", reason=str(e), details={})
    except Failed as e:
        record.update(status="fail", reason=str(e), details={})
    except Exception as e:  # one failing section must not stop the rest
        record.update(status="fail", reason=one_line(e), details={"traceback": traceback.format_exc(limit=6)})
    record["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"[gpu_check] {name}: {record['status']} ({record['seconds']} s) {record['reason']}", flush=True)
    return record


# ---------------------------------------------------------------- environment


def section_environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "missing"
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu threads": torch.get_num_threads(),
        "versions": versions,
        "torch CUDA build": torch.version.cuda,
        "cuda available": torch.cuda.is_available(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        env.update({
            "gpu": props.name,
            "capability": f"{props.major}.{props.minor}",
            "gpu memory GiB": round(total / 2**30, 1),
            "free GiB": round(free / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(),
            "tf32 matmul (default)": torch.backends.cuda.matmul.allow_tf32,
            "tf32 cudnn (default)": torch.backends.cudnn.allow_tf32,
            "bf16 supported": torch.cuda.is_bf16_supported(),
        })
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            env["driver"] = out.stdout.strip()
    return env


# ---------------------------------------------------------------- DCN parity


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def dcn_inputs(channels: int, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, size, size, generator=g, dtype=torch.float64)
    offset = torch.randn(2, 18, size, size, generator=g, dtype=torch.float64) * 2
    mask = torch.rand(2, 9, size, size, generator=g, dtype=torch.float64)
    weight = torch.randn(channels, channels, 3, 3, generator=g, dtype=torch.float64) / math.sqrt(9 * channels)
    return [x, offset, mask, weight]


def dcn_forward_backward(inputs: list[torch.Tensor], impl: str, grad: bool, autocast: torch.dtype | None = None):
    """Output and (if ``grad``) the gradients of sum(out * probe) for every input, all as float64 CPU tensors."""
    tensors = [t.detach().requires_grad_(grad) for t in inputs]
    device = tensors[0].device
    with torch.set_grad_enabled(grad), torch.autocast(device.type, dtype=autocast or torch.float32,
                                                      enabled=autocast is not None):
        out = deform_conv3x3(*tensors, impl=impl)
    grads = []
    if grad:
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device).view_as(out)
        grads = torch.autograd.grad((out * probe).sum(), tensors)
    sync(device)
    return [t.detach().double().cpu() for t in (out, *grads)]


def rel_err(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Largest max |got - ref| / max |ref| over the tensors (NaN if any value is not finite)."""
    errs = [((g - r).abs().max() / r.abs().max().clamp_min(1e-30)).item() for g, r in zip(got, ref)]
    return math.nan if any(math.isnan(e) for e in errs) else max(errs)


def section_dcn_parity(device: torch.device, quick: bool) -> dict[str, Any]:
    channels, size = (16, 24) if quick or device.type == "cpu" else (64, 64)
    base = dcn_inputs(channels, size)
    reference = dcn_forward_backward(base, "torchvision", grad=True)
    impls = ["torchvision", "grid_sample"] + (["numba"] if device.type == "cpu" else [])
    cases: list[tuple[str, torch.dtype, torch.dtype | None, bool | None]] = [
        ("fp64", torch.float64, None, None),
        ("fp32", torch.float32, None, False),
        ("fp32+tf32", torch.float32, None, True),
        ("bf16 autocast", torch.float32, torch.bfloat16, None),
        ("fp16 autocast", torch.float32, torch.float16, None),
    ]
    rows, failed = [], False
    for impl in impls:
        for label, dtype, autocast, allow_tf32 in cases:
            row = {"impl": impl, "case": label, "tol": PARITY_TOL[label]}
            if allow_tf32 and device.type != "cuda":
                rows.append({**row, "status": "skip", "note": "TF32 exists on CUDA only"})
                continue
            grad = impl != "numba"
            inputs = [t.to(device=device, dtype=dtype) for t in base]
            try:
                with tf32(bool(allow_tf32)) if device.type == "cuda" else contextlib.nullcontext():
                    got = dcn_forward_backward(inputs, impl, grad, autocast)
                err_out = rel_err(got[:1], reference[:1])
                err_grad = rel_err(got[1:], reference[1:]) if grad else None
                # The model runs the DCN with autocast off; under autocast only the forward is judged.
                ok = err_out <= row["tol"] and (err_grad is None or autocast is not None or err_grad <= 10 * row["tol"])
                rows.append({**row, "status": "pass" if ok else "fail", "rel_err_out": err_out, "rel_err_grad": err_grad})
            except Exception as e:
                rows.append({**row, "status": "fail", "note": one_line(e)})
            failed |= rows[-1]["status"] == "fail"
    return {"inputs": f"B=2, C={channels}, {size}x{size}; reference torchvision float64 on CPU; gradient tolerance "
                      "10x the output's; under autocast gradients are reported, not judged (the model runs the DCN "
                      "in fp32 with autocast off)", "rows": rows, "failed": failed,
            "reason": "; ".join(f"{r['impl']} {r['case']}" for r in rows if r["status"] == "fail")}


# ---------------------------------------------------------------- restore


def sample_tensor(small: bool) -> torch.Tensor:
    """The bundled sample as (3,H,W) in [0, 1]; ``small``: its 128x192 centre (CPU dry runs)."""
    rgb = np.asarray(Image.open(sample_image()).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    if small:
        top, left = (x.shape[1] - 128) // 2, (x.shape[2] - 192) // 2
        x = x[:, top : top + 128, left : left + 192].contiguous()
    return x


@functools.lru_cache(maxsize=2)
def cpu_reference(small: bool) -> torch.Tensor:
    """The default weights' fp32 restoration of the sample on the CPU, untiled."""
    return restore_tensor(load_model("airnet-lite", device="cpu"), sample_tensor(small), tile=None)


def db(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(psnr(a[None].float().cpu(), b[None].float().cpu()).item(), 2)


def section_restore(device: torch.device) -> dict[str, Any]:
    x = sample_tensor(small=device.type == "cpu")
    reference = cpu_reference(small=device.type == "cpu")
    model = load_model("airnet-lite", device=str(device))
    rows, failed = [], False
    for precision in ("fp32", "fp16", "bf16"):
        t0 = time.perf_counter()
        try:
            out = restore_tensor(model, x, tile=None, precision=precision)
            value = db(out, reference)
            ok = value > RESTORE_MIN_PSNR
            rows.append({"precision": precision, "psnr_vs_cpu_fp32": value, "status": "pass" if ok else "fail",
                         "seconds": round(time.perf_counter() - t0, 3)})
        except Exception as e:
            rows.append({"precision": precision, "status": "fail", "note": one_line(e)})
        failed |= rows[-1]["status"] == "fail"
    return {"image": f"bundled sample {tuple(x.shape)}{' (centre crop)' if device.type == 'cpu' else ''}, airnet-lite, "
                     f"threshold {RESTORE_MIN_PSNR} dB", "rows": rows,
            "failed": failed, "reason": "; ".join(r["precision"] for r in rows if r["status"] == "fail")}


# ---------------------------------------------------------------- tiling and out-of-memory


class FakeOOM:
    """A forward pre-hook on the restorer that raises an out-of-memory error once, for a tile above ``pixels``.

    The encoder has already run, so its activations are alive when the error is raised.
    """

    def __init__(self, pixels: int) -> None:
        self.pixels, self.raised = pixels, 0

    def __call__(self, module: torch.nn.Module, args: tuple) -> None:
        x = args[0]
        if not self.raised and x.shape[-2] * x.shape[-1] > self.pixels:
            self.raised += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (forced by gpu_check)")


def section_tiling(device: torch.device) -> dict[str, Any]:
    small = device.type == "cpu"
    x = sample_tensor(small)
    tile, overlap = (96, 24) if small else (192, 64)
    model = load_model("airnet-lite", device=str(device))
    whole = cpu_reference(small) if small else restore_tensor(model, x, tile=None)
    tiled = restore_tensor(model, x, tile=tile, tile_overlap=overlap)
    details: dict[str, Any] = {"image": tuple(x.shape), "tile": tile, "overlap": overlap, "tiled_vs_whole_db": db(tiled, whole)}
    hook = FakeOOM(pixels=tile * tile)
    handle = model.network.R.register_forward_pre_hook(hook)
    try:
        sync(device)
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        recovered = restore_tensor(model, x, tile=None, tile_overlap=overlap)
        if device.type == "cuda":
            details["allocated_mb_after_vs_before"] = round((torch.cuda.memory_allocated(device) - before) / 2**20, 2)
    finally:
        handle.remove()
    details.update(oom_raised=hook.raised, recovered_vs_whole_db=db(recovered, whole))
    problems = []
    if details["tiled_vs_whole_db"] <= TILED_MIN_PSNR:
        problems.append(f"tiled vs whole {details['tiled_vs_whole_db']} dB <= {TILED_MIN_PSNR}")
    if hook.raised != 1:
        problems.append("the forced out-of-memory error was not raised")
    if details["recovered_vs_whole_db"] <= TILED_MIN_PSNR:
        problems.append(f"recovered vs whole {details['recovered_vs_whole_db']} dB <= {TILED_MIN_PSNR}")
    return {**details, "failed": bool(problems), "reason": "; ".join(problems)}


def section_memory(device: torch.device, quick: bool) -> dict[str, Any]:
    """Peak allocated bytes per pixel per feature channel of an inference forward (sizes tiles on this device)."""
    if device.type != "cuda":
        raise Skip("CUDA allocator statistics only; the CPU constant is measured by benchmarks (RSS)")
    size = 256 if quick else 512
    x = torch.rand(1, 3, size, size, device=device)
    rows = []
    for name in ("airnet-lite", "airnet"):
        model = AirNet(get_variant(name).config).eval().to(device)
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            torch.cuda.empty_cache()
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                model(x)
            sync(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            rows.append({"variant": name, "precision": precision, "size": size,
                         "bytes_per_pixel_per_channel": round(peak / (size * size * model.config.n_feats), 1)})
        del model
    worst = max(r["bytes_per_pixel_per_channel"] for r in rows)
    constant = bytes_per_pixel_per_channel(device.type)
    return {"rows": rows, "measured_max": worst, "constant_in_tiling": constant, "failed": worst > constant,
            "reason": f"measured {worst} > tiling constant {constant}: raise it" if worst > constant else ""}


# ---------------------------------------------------------------- training


def write_photos(folder: Path) -> Path:
    """Four small synthetic photographs: the training data of the smoke runs."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:48, 0:56]
    for i in range(4):
        img = np.stack([x * 3 + 20 * i, y * 4, (x + y) * 2], axis=2) % 256
        Image.fromarray(img.astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def smoke_config(photos: Path, *extra: str):
    from airnet_restore.train import load_config

    overrides = [f"data.types.{i}.clean={photos}" for i in range(3)] + [f"val.clean={photos}", "val.files=[p0.png]",
                                                                          "val.crop=32"]
    return load_config(SMOKE, [*overrides, *extra])


def train_run(config, run_dir: Path, device: torch.device, resume: str | None = None,
              stop_at: int | None = None):
    """Run a Trainer; returns it and the per-step (loss, l1, contrast, acc) values."""
    from airnet_restore.train import Trainer

    trainer = Trainer(config, run_dir, resume=resume, device=str(device), progress=False)
    step, values = trainer.train_step, []

    def recorded(batch):
        stats = step(batch)
        values.append([float(v) for v in stats.detach().float().cpu().tolist()])
        if stop_at is not None and trainer.global_step + 1 == stop_at:
            trainer.stop_requested = True
        return stats

    trainer.train_step = recorded
    trainer.run()
    return trainer, values


def section_train(device: torch.device, quick: bool, tmp: Path) -> dict[str, Any]:
    photos = write_photos(tmp / "photos")
    iters = 2 if quick else 4
    rows, failed = [], False
    for amp in ("none", "bf16", "fp16"):
        t0 = time.perf_counter()
        try:
            config = smoke_config(photos, "train.epochs=2", "train.epochs_encoder=1", f"train.iters_per_epoch={iters}",
                                  "val.every=1", f"train.amp={amp}")
            trainer, values = train_run(config, tmp / f"amp-{amp}", device)
            finite = all(math.isfinite(v) for row in values for v in row)
            rows.append({"amp": amp, "steps": trainer.global_step, "last_loss": round(values[-1][0], 5),
                         "status": "pass" if finite else "fail", "seconds": round(time.perf_counter() - t0, 2),
                         **({} if finite else {"note": "non-finite loss"})})
        except Exception as e:
            rows.append({"amp": amp, "status": "fail", "note": one_line(e)})
        failed |= rows[-1]["status"] == "fail"
    return {"rows": rows, "failed": failed,
            "reason": "; ".join(f"amp {r['amp']}: {r.get('note', '')}" for r in rows if r["status"] == "fail")}


def section_resume(device: torch.device, quick: bool, tmp: Path) -> dict[str, Any]:
    """Straight run vs a run stopped mid-epoch and resumed, EMA on: exact on CPU, within a tolerance on CUDA
    (torchvision's DCN backward and cuDNN are not deterministic there)."""
    photos = write_photos(tmp / "photos")
    iters = 2 if quick else 3
    extra = ("train.epochs=2", "train.epochs_encoder=1", f"train.iters_per_epoch={iters}", "val.every=2", "train.ema=0.9")
    straight, _ = train_run(smoke_config(photos, *extra), tmp / "straight", device)
    first, _ = train_run(smoke_config(photos, *extra), tmp / "resumed", device, stop_at=iters + 1)  # mid joint epoch
    stopped_at = (first.epoch, first.iteration)
    resumed, values = train_run(smoke_config(photos, *extra), tmp / "resumed", device, resume="auto")
    shadow_devices = sorted({v.device.type for v in resumed.ema.shadow.values()})
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    ema_diff = max((straight.ema.shadow[k].double() - v.double()).abs().max().item()
                   for k, v in resumed.ema.shadow.items() if v.is_floating_point())
    tol = 0.0 if device.type == "cpu" else 1e-2
    problems = []
    if shadow_devices != [device.type]:
        problems.append(f"EMA shadow on {shadow_devices}, model on {device.type}")
    if max(diff, ema_diff) > tol:
        problems.append(f"resumed differs from straight by {max(diff, ema_diff):.2e} > {tol}")
    if not all(math.isfinite(v) for row in values for v in row):
        problems.append("non-finite loss after resume")
    return {"stopped_at_epoch_iteration": stopped_at, "max_abs_diff_weights": diff, "max_abs_diff_ema": ema_diff,
            "tolerance": tol, "ema_shadow_devices": shadow_devices, "failed": bool(problems),
            "reason": "; ".join(problems)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, device: str, photos: str, out: str, iters: int) -> None:
    """One rank: join a gloo group (both ranks may share one GPU), train a few steps, save the state."""
    from airnet_restore.train import Trainer
    from airnet_restore.train.distributed import shutdown_process_group

    os.environ.update(RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(0)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        config = smoke_config(Path(photos), "train.epochs=2", "train.epochs_encoder=1", f"train.iters_per_epoch={iters}",
                              "val.every=100")
        trainer = Trainer(config, Path(out) / f"run{rank}", device=device, progress=False)
        trainer.run()
        state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
        state["_sync_bn"] = torch.tensor(any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules()))
        torch.save(state, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown_process_group()


def section_ddp(device: torch.device, quick: bool, tmp: Path) -> dict[str, Any]:
    photos = write_photos(tmp / "photos")
    out = tmp / "ddp"
    out.mkdir()
    ctx = mp.start_processes(_ddp_worker, args=(_free_port(), device.type, str(photos), str(out), 2 if quick else 3),
                             nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + (120 if quick else 240)
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                raise Failed("the two ranks did not finish in time (hang?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    s0, s1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    sync_bn = bool(s0.pop("_sync_bn")) and bool(s1.pop("_sync_bn"))
    bn_stats = [k for k in s0 if "running_" in k or "num_batches" in k]
    differ = [k for k in s0 if (sync_bn or k not in bn_stats) and not torch.equal(s0[k], s1[k])]
    queue_ok = torch.equal(s0["E.E.queue"], s1["E.E.queue"]) and torch.equal(s0["E.E.queue_ptr"], s1["E.E.queue_ptr"])
    problems = []
    if not queue_ok:
        problems.append("MoCo queues differ between ranks")
    if differ:
        problems.append(f"{len(differ)} tensors differ between ranks, first {differ[0]}")
    if device.type == "cuda" and not sync_bn:
        problems.append("BatchNorm was not converted to SyncBatchNorm on CUDA")
    return {"backend": "gloo", "sync_batchnorm": sync_bn,
            "batchnorm_stats_compared": sync_bn, "queues_identical": queue_ok, "failed": bool(problems),
            "reason": "; ".join(problems) or ("" if sync_bn else "per-rank BatchNorm statistics on CPU (no SyncBatchNorm)")}


# ---------------------------------------------------------------- speed


def section_dcn_speed(device: torch.device, quick: bool) -> dict[str, Any]:
    import dcn_speed

    impls = ["torchvision", "grid_sample"] + (["numba"] if device.type == "cpu" else [])
    # (layer sizes, layer repeats, whole-model sizes, model repeats): the CPU dry run stays short.
    plan = {
        ("cpu", True): ([128], 2, [], 1),
        ("cpu", False): ([256], 2, [], 1),  # whole models on the CPU: restore speed
        ("cuda", True): ([256], 3, [(256, 256)], 2),
        ("cuda", False): ([256, 512], 5, [(256, 256), (512, 512)], 3),
    }
    sizes, repeats, model_sizes, model_repeats = plan[device.type, quick]
    rows = dcn_speed.layer_cases(device, impls, sizes, repeats)
    if model_sizes:
        rows += dcn_speed.model_cases(device, impls, model_sizes, model_repeats)
    return {"rows": rows}


def section_restore_speed(device: torch.device, quick: bool) -> dict[str, Any]:
    import restore_speed

    if device.type == "cpu":
        argv = ["--size", "256", "--repeats", "1", "--variants", "airnet-lite"]
    else:
        argv = ["--size", "1000", "--repeats", "2" if quick else "3"]
    argv += ["--device", str(device)]
    buffer = io.StringIO()
    old_argv = sys.argv
    sys.argv = ["restore_speed.py", *argv]
    try:
        with contextlib.redirect_stdout(buffer):
            restore_speed.main()
    finally:
        sys.argv = old_argv
    return {"command": "restore_speed.py " + " ".join(argv), "table": buffer.getvalue().strip()}


# ---------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check ({report['device']}{', quick' if report['quick'] else ''})", "",
             f"{report['started']}, {report['seconds']} s in all: "
             + ", ".join(f"{n} {s}" for s, n in report["summary"].items()), "",
             "| section | status | seconds | reason |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {s['reason']} |" for s in report["sections"]]
    for s in report["sections"]:
        if not s["details"]:
            continue
        lines += ["", f"## {s['name']}", ""]
        details = dict(s["details"])
        rows = details.pop("rows", None)
        table = details.pop("table", None)
        trace = details.pop("traceback", None)
        for k, v in details.items():
            lines.append(f"- {k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
        if table:
            lines += ["", table]
        if trace:
            lines += ["", "```", trace.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities as strings, so the JSON report is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
    return "" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for gpu_check.md and gpu_check.json")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp_name:
        tmp = Path(tmp_name)
        sections = [
            ("environment", lambda: section_environment(device)),
            ("dcn parity", lambda: section_dcn_parity(device, args.quick)),
            ("restore precisions", lambda: section_restore(device)),
            ("tiling and out-of-memory", lambda: section_tiling(device)),
            ("memory per pixel", lambda: section_memory(device, args.quick)),
            ("training amp", lambda: section_train(device, args.quick, tmp / "train")),
            ("resume with EMA", lambda: section_resume(device, args.quick, tmp / "resume")),
            ("DDP two processes", lambda: section_ddp(device, args.quick, tmp / "ddp")),
            ("DCN speed", lambda: section_dcn_speed(device, args.quick)),
            ("restore speed", lambda: section_restore_speed(device, args.quick)),
        ]
        records = [run_section(name, fn) for name, fn in sections]
    summary = {s: sum(r["status"] == s for r in records) for s in ("pass", "fail", "skip")}
    report = {"device": str(device), "quick": args.quick, "started": started,
              "seconds": round(time.perf_counter() - t0, 1), "summary": summary, "sections": records}
    (args.out / "gpu_check.json").write_text(json.dumps(finite_json(report), indent=2, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(f"[gpu_check] {summary} -> {args.out / 'gpu_check.md'}")
    return 1 if summary["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
