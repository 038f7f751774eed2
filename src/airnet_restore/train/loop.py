"""``airnet train``: the paper's two phases, resumable bit for bit, observable, and torchrun-ready."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from airnet_restore.data.aio import AIODataset, TypeSource
from airnet_restore.data.layouts import clean_folder, read_pairs
from airnet_restore.device import inference_layout, resolve_device
from airnet_restore.errors import AirNetError, first_line
from airnet_restore.evaluate import Task, build_tasks, evaluate, model_method
from airnet_restore.memory import tune_allocator
from airnet_restore.metrics import average, get_protocol
from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.precision import autocast
from airnet_restore.train.checkpoint import first_nonfinite, latest_state, load_state, save_state, state_path
from airnet_restore.train.config import ModelSection, TrainConfig
from airnet_restore.train.distributed import DistInfo, agree_stop, all_reduce_mean, gather_keys, init_from_env
from airnet_restore.train.init import apply_init, init_state_dict
from airnet_restore.train.rundir import check_run_dir, open_run_dir, write_run_file
from airnet_restore.train.schedule import lr_at
from airnet_restore.weights import load_into, save_weights

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

LOG_EVERY = 10


class TrainStep(nn.Module):
    """One training forward: contrastive logits and keys, and (joint phase) the restoration of crop 1.

    Wrapped by DistributedDataParallel; the keys leave it un-enqueued so they can be gathered first.
    """

    def __init__(self, model: AirNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, joint: bool):
        _, logits, labels, inter, keys = self.model.E.E.contrast(x1, x2)
        restored = self.model.R(x1, inter) if joint else None
        return restored, logits, labels, keys


def build_sources(config: TrainConfig) -> list[TypeSource]:
    """The degradation types of the config, with their files listed (a missing folder fails here)."""
    sources = []
    for t in config.data.types:
        if t.clean is not None:
            files = tuple(p for p in clean_folder(t.clean) if p.name not in set(t.exclude))
            if not files:
                raise AirNetError(f"type {t.name!r}: every image of {t.clean} is excluded")
            sources.append(TypeSource(t.name, clean=files, degradation=t.degradation))
            continue
        assert t.root is not None and t.layout is not None  # TypeSection: a clean folder, or a layout and its root
        pairs, _ = read_pairs(t.root, t.layout)
        if not pairs:
            raise AirNetError(f"type {t.name!r}: no complete pairs in {t.root} (layout {t.layout})")
        sources.append(TypeSource(t.name, pairs=tuple(pairs)))
    return sources


def build_val_tasks(config: TrainConfig) -> list[Task]:
    """The validation pairs: the tasks ``airnet eval`` builds from the same photos, degradations, crop and seed."""
    v = config.val
    if v.clean is None:
        return []
    protocol = get_protocol(v.protocol)
    return [task for name in v.degradations for task in build_tasks(name, v.clean, protocol, v.crop, v.files, v.seed)]


class EMA:
    """Exponential moving average of the restorer's weights (exported instead of the raw weights)."""

    def __init__(self, module: nn.Module, decay: float, shadow: dict[str, torch.Tensor] | None = None) -> None:
        self.decay = decay
        source = shadow if shadow is not None else module.state_dict()
        device = next(module.parameters()).device  # a shadow read from a checkpoint sits on the CPU
        self.shadow = {k: v.detach().to(device).clone() for k, v in source.items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)


class Trainer:
    """A training run into ``run_dir``: a new or empty folder, one this class made, or any with ``resume``."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: str | None = None,
        device: str = "auto",
        progress: bool = True,
        name: str = "airnet",
    ) -> None:
        tune_allocator()
        self.progress, self.name = progress, name
        self.run_dir = Path(run_dir)
        requested = resolve_device(device)
        self.dist: DistInfo = init_from_env(requested.type)
        self.device = torch.device(requested.type, self.dist.local_rank) if requested.type == "cuda" else requested
        if self.dist.is_main:
            check_run_dir(self.run_dir, resume=bool(resume))  # before anything is loaded or written
        self.init_report: list[str] = []
        self.resumed_from: Path | None = None
        init_sd, init_arch = None, None
        if config.train.init:
            init_sd, source, init_arch = init_state_dict(config.train.init)
            config = self._config_for_init(config, init_arch)
            self.init_report.append(f"initialised from {source}")
        self.config = config
        t = config.train
        self.sources = build_sources(config)
        self.val_tasks = build_val_tasks(config) if self.dist.is_main else []
        n_types = len(self.sources)
        m = config.model
        queue = m.queue_per_type * n_types
        global_batch = n_types * config.data.per_type * self.dist.world_size
        if queue % global_batch:
            raise AirNetError(f"queue size {queue} is not divisible by the global batch {global_batch}")
        self.model_config = m.airnet_config(queue)
        self.global_batch = global_batch
        torch.manual_seed(t.seed)  # identical initial weights and queue on every rank
        self.model = AirNet(self.model_config, dcn_impl=t.dcn_impl)
        if init_sd is not None:
            self.init_report += apply_init(self.model, init_sd, partial=t.init_partial, source=init_arch)
        self.model.to(self.device)
        if "encoder" in t.freeze:
            self.model.E.E.encoder_q.requires_grad_(False)
        self.channels_last = self.device.type == "cpu" if t.channels_last is None else t.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.dist.enabled and self.device.type == "cuda":
            # BatchNorm choice under DDP: SyncBatchNorm on GPUs, so encoder statistics are global.
            # gloo on CPU has no SyncBatchNorm: each rank normalises its own batch (documented).
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.step_module: nn.Module = TrainStep(self.model)
        self.wrapped_joint: bool | None = None
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=t.lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.ema = EMA(self.model.R, t.ema) if t.ema else None
        self.dataset = AIODataset(self.sources, config.data.patch_size, t.iters_per_epoch, t.seed, self.dist.rank,
                                  self.dist.world_size, per_type=config.data.per_type)
        self.epoch, self.iteration, self.global_step = 0, 0, 0
        self.best = -math.inf
        self.validated_step = -1  # the step the last validation scored (a stop right after it need not repeat it)
        self.stop_requested = False
        self.writer: SummaryWriter | None = None
        if resume:
            self._resume(resume)
        for line in self.init_report:
            self.log({"event": "init", "detail": line})

    @staticmethod
    def _config_for_init(config: TrainConfig, arch: AirNetConfig) -> TrainConfig:
        """The config a run from existing weights uses: their architecture where the config names
        none, and no encoder warm-up unless asked for (the encoder is already trained)."""
        update: dict[str, Any] = {}
        if "model" not in config.model_fields_set:
            update["model"] = ModelSection.of(arch, config.model.queue_per_type)
        if not config.train.init_warmup:
            update["train"] = config.train.model_copy(update={"epochs_encoder": 0})
        return config.model_copy(update=update)

    def _wrap(self, joint: bool) -> None:
        """DistributedDataParallel around the step; unused parameters are searched for only during
        the warm-up (the restorer is idle then), since the search costs a graph pass per step."""
        if not self.dist.enabled or self.wrapped_joint == joint:
            return
        self.step_module = nn.parallel.DistributedDataParallel(
            TrainStep(self.model),
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=not joint,
        )
        self.wrapped_joint = joint

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.shadow if self.ema else None,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "global_step": self.global_step,
            "best": self.best,
            "rng": rng,
            "config": self.config.model_dump(mode="json"),
        }

    def _resume(self, resume: str) -> None:
        path = latest_state(self.run_dir) if resume == "auto" else Path(resume)
        if path is None:
            self.log({"event": "fresh start", "detail": f"no state found in {self.run_dir}"})
            return
        self.resumed_from = path
        state = load_state(path)  # entries present, of their types, finite
        load_into(self.model, state["model"])  # a state of another architecture is a clear error
        queue = self.model.E.E.K  # the state's: its length follows the batch it was trained with
        if queue % self.global_batch:
            raise AirNetError(f"{path}: its MoCo queue holds {queue} keys, which the global batch of {self.global_batch} "
                              f"(types x per_type x processes) does not divide; resume with a batch that divides {queue}, "
                              "or start from the state with --init (fresh queue, optimiser and schedule)")
        shadow = state["ema"]
        if shadow is not None and {k: v.shape for k, v in shadow.items()} != {k: v.shape for k, v in self.model.R.state_dict().items()}:
            raise AirNetError(f"{path}: the state's EMA weights do not fit its restorer (a damaged state)")
        try:
            self.optimizer.load_state_dict(state["optimizer"])  # Adam moves its state to the parameters' device
            if state["scaler"] and self.scaler.is_enabled():  # empty when the state was saved without fp16
                self.scaler.load_state_dict(state["scaler"])
            saved = state["config"]["train"]
            if saved.get("init") and not self.config.train.init:
                # A run started with --init skipped the warm-up; resumed without --init, it must not return to it.
                train = self.config.train.model_copy(update={"epochs_encoder": int(saved["epochs_encoder"])})
                self.config = self.config.model_copy(update={"train": train})
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                # Saved on a machine with maybe another number of GPUs: restore those present in both.
                for i, rng in enumerate(state["rng"]["cuda"][: torch.cuda.device_count()]):
                    torch.cuda.set_rng_state(rng, i)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            # An optimiser of other parameters (train.freeze changed), a damaged generator state
            raise AirNetError(f"{path}: the state does not fit this run ({first_line(e)})") from None
        if self.ema:
            # A shadow from the state (read onto the CPU) moves to the training device; EMA switched
            # on at resume starts from the resumed weights, not the initial ones.
            self.ema = EMA(self.model.R, self.ema.decay, shadow=shadow)
        self.epoch, self.iteration, self.global_step = state["epoch"], state["iteration"], state["global_step"]
        self.best = state["best"]
        self.init_report = []  # the resumed state replaces the init weights
        self.log({"event": "resumed", "from": str(path), "epoch": self.epoch, "iteration": self.iteration})

    def check_finite(self, losses: dict[str, float] | None = None) -> None:
        """Stop a diverged run with a one-line error before it writes anything: a loss (not with fp16,
        whose loss scaler skips such steps itself) or a weight that is NaN or Inf. What was written
        before, the last good state and weights, stays on disk."""
        if self.scaler.is_enabled():
            losses = None
        bad = [f"the {k} is {v}" for k, v in (losses or {}).items() if not math.isfinite(v)]
        tensors = [*self.model.state_dict().items(), *(self.ema.shadow.items() if self.ema else ())]
        weight = first_nonfinite(tensors)
        if weight:
            bad.append(f"weight {weight} holds NaN or Inf")
        if bad:
            kept = latest_state(self.run_dir)
            raise AirNetError(f"training diverged at epoch {self.epoch + 1}, step {self.global_step}: {'; '.join(bad)}; "
                              f"nothing more was written ({f'last good state: {kept}' if kept else 'no state saved yet'}); "
                              "lower train.lr or train.lr_joint")

    def save_checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        self.check_finite()
        path = save_state(state_path(self.run_dir, self.epoch, self.iteration), self.state())
        self.export("last")
        return path

    def inference_model(self) -> AirNet:
        """What validation scores and ``export`` writes: the model, with the EMA restorer if enabled (then in the
        layout ``airnet eval`` loads it in, so both score the same numbers)."""
        if not self.ema:
            return self.model
        model = AirNet(self.model_config, dcn_impl=self.config.train.dcn_impl).to(self.device)
        model.load_state_dict(self.model.state_dict())
        model.R.load_state_dict(self.ema.shadow)
        return inference_layout(model, self.device)

    def export(self, which: str) -> Path:
        """Inference weights as safetensors, ready for ``airnet restore`` (EMA weights if enabled); never non-finite ones."""
        self.check_finite()
        meta = {
            "variant": self.name,
            "training": {"config": self.config.model_dump(mode="json"), "epoch": self.epoch,
                         "iteration": self.iteration, "steps": self.global_step, "best_val_psnr": self.best},
            "licence": self.config.licence,
            "description": self.config.description,
        }
        return save_weights(self.inference_model(), self.run_dir / f"{which}.safetensors", metadata=meta)

    # ---------------------------------------------------------------- logging
    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        write_run_file(self.run_dir / "log.jsonl", json.dumps({"time": time.time(), **record}) + "\n", append=True)

    def _scalar(self, tag: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, self.global_step)

    def _open_run_dir(self) -> None:
        """Create the run folder (marked as ours) with the run's config; a failure is one line naming it."""
        if not self.dist.is_main:
            return
        open_run_dir(self.run_dir)
        write_run_file(self.run_dir / "config.yaml", yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:
            self.writer = None  # TensorBoard is optional: pip install airnet-restore[train]
        except OSError as e:
            raise AirNetError(f"{self.run_dir / 'tensorboard'}: cannot create it: {e.strerror or e}") from None

    # ---------------------------------------------------------------- training
    def _batches(self):
        """One loader for the rest of the run, indexed across epochs, so workers live on between
        epochs; batch i of epoch e is the same whether the run was interrupted or not."""
        per_epoch = len(self.dataset)
        start = self.epoch * per_epoch + self.iteration * self.dataset.batch_size
        workers = self.config.data.workers
        return iter(DataLoader(
            self.dataset,
            batch_size=self.dataset.batch_size,
            sampler=range(start, self.config.train.epochs * per_epoch),
            drop_last=True,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        ))

    def train_step(self, batch) -> torch.Tensor:
        """One optimiser step; returns (loss, l1, contrast, acc) on the device, not synchronised."""
        t = self.config.train
        joint = self.epoch >= t.epochs_encoder
        self._wrap(joint)
        _, d1, d2, c1, _ = batch
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        d1, d2, c1 = (x.to(self.device, non_blocking=True).contiguous(memory_format=fmt) for x in (d1, d2, c1))
        self.model.train()
        if "encoder" in t.freeze:  # frozen means frozen: BatchNorm statistics too
            self.model.E.E.encoder_q.eval()
            self.model.E.E.encoder_k.eval()
        with autocast(self.device, t.precision):
            restored, logits, labels, keys = self.step_module(d1, d2, joint)
            contrast = F.cross_entropy(logits.float(), labels)
            l1 = F.l1_loss(restored.float(), c1) if joint else torch.zeros((), device=self.device)
            loss = l1 + t.contrastive_weight * contrast if joint else contrast
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.model.E.E.enqueue(gather_keys(keys.detach(), self.dist))
        if self.ema and joint:
            self.ema.update(self.model.R)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return torch.stack([loss.detach(), l1.detach(), contrast.detach(), acc])

    def validate(self) -> dict[str, float]:
        """PSNR and SSIM per validation task and their mean PSNR, scored exactly as ``airnet eval`` scores."""
        if not self.val_tasks:
            return {}
        restore = model_method(self.inference_model(), tile=None, strength=1.0, anchor=0.0)  # the network itself
        first: dict[str, np.ndarray] = {}

        def method(degraded: np.ndarray, task: Task) -> np.ndarray:
            out = restore(degraded, task)
            first.setdefault(task.label, out)
            return out

        report = evaluate(self.val_tasks, {self.name: (method, lambda _: True)}, get_protocol(self.config.val.protocol),
                          progress=False)
        results: dict[str, float] = {}
        for label, (psnr, ssim) in report.scores[self.name].items():
            results[f"{label}/psnr"], results[f"{label}/ssim"] = psnr, ssim
        results["mean/psnr"] = average([psnr for psnr, _ in report.scores[self.name].values()])
        if self.writer is not None:
            for task in self.val_tasks:
                grid = np.concatenate([task.degraded[0] / 255.0, first[task.label], task.clean[0] / 255.0], axis=1)
                self.writer.add_image(f"val/{task.label}", grid.astype(np.float32), self.global_step, dataformats="HWC")
        return results

    def _signal(self, signum, frame) -> None:  # noqa: ARG002
        self.stop_requested = True

    def run(self) -> Path:
        """Train to the configured number of epochs (or until stopped); returns the run folder."""
        t = self.config.train
        self._open_run_dir()
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        start = time.monotonic()
        last_ckpt = start
        batches = self._batches() if self.epoch < t.epochs else iter(())
        try:
            while self.epoch < t.epochs and not self.stop_requested:
                for p in self.optimizer.param_groups:
                    p["lr"] = lr_at(self.epoch, t)
                bar = tqdm(total=t.iters_per_epoch, initial=self.iteration,
                           desc=f"epoch {self.epoch + 1}/{t.epochs}", disable=not (self.progress and self.dist.is_main))
                while self.iteration < t.iters_per_epoch:
                    stats = self.train_step(next(batches))
                    self.iteration += 1
                    self.global_step += 1
                    bar.update()
                    if self.global_step % LOG_EVERY == 0 or self.global_step == 1:
                        # The only host synchronisation of a step, every LOG_EVERY steps.
                        values = dict(zip(("loss", "l1", "contrast", "acc"), all_reduce_mean(stats, self.dist).tolist()))
                        self.check_finite(values)
                        lr = self.optimizer.param_groups[0]["lr"]
                        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
                        self.log({"step": self.global_step, "epoch": self.epoch, "lr": lr, **values})
                        for k, v in values.items():
                            self._scalar(f"train/{k}", v)
                        self._scalar("train/lr", lr)
                    now = time.monotonic()
                    if t.max_minutes and now - start >= 60 * t.max_minutes:
                        self.stop_requested = True
                    # Every rank stops at the same step, or the others would wait in a collective.
                    self.stop_requested = agree_stop(self.stop_requested, self.dist)
                    if t.checkpoint_minutes and now - last_ckpt >= 60 * t.checkpoint_minutes:
                        self.save_checkpoint()
                        last_ckpt = now
                    if self.stop_requested:
                        break
                bar.close()
                if self.stop_requested and self.iteration < t.iters_per_epoch:
                    break
                self.check_finite()  # before validation scores (and exports) the epoch's weights
                self.epoch, self.iteration = self.epoch + 1, 0
                if self.dist.is_main and (self.epoch % self.config.val.every == 0 or self.epoch == t.epochs):
                    self._after_validation(self.validate())
                if self.epoch % t.checkpoint_every == 0 or self.epoch == t.epochs:
                    self.save_checkpoint()
                    last_ckpt = time.monotonic()
            if self.stop_requested:
                if self.dist.is_main and self.epoch >= t.epochs_encoder and self.validated_step != self.global_step:
                    self._after_validation(self.validate())  # a stopped run still reports where it stands
                path = self.save_checkpoint()
                self.log({"event": "stopped", "epoch": self.epoch, "iteration": self.iteration, "state": str(path)})
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if self.writer is not None:
                self.writer.close()
        return self.run_dir

    def _after_validation(self, results: dict[str, float]) -> None:
        if not results:
            return
        self.validated_step = self.global_step
        self.log({"event": "validation", "epoch": self.epoch, "step": self.global_step, **results})
        if self.progress:
            psnr = ", ".join(f"{k.removesuffix('/psnr')} {v:.2f}" for k, v in results.items() if k.endswith("/psnr"))
            tqdm.write(f"validation PSNR (dB) after epoch {self.epoch}: {psnr}")
        for k, v in results.items():
            self._scalar(f"val/{k}", v)
        if results["mean/psnr"] > self.best:
            self.best = results["mean/psnr"]
            self.export("best")
