"""Weights I/O: official ``.pth`` checkpoints (tensors only), our safetensors with metadata, conversion.

Checkpoints are untrusted files: ``.pth`` goes through ``torch.load(weights_only=True)``
only, and nothing in a file is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError, first_line
from airnet_restore.models.airnet import AirNet, AirNetConfig

FORMAT = "airnet-restore"
# What the eval forward reads: the restorer and the query encoder's first ResBlock.
INFERENCE_PREFIXES = ("R.", "E.E.encoder_q.E_pre.")
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint file: (state dict with canonical keys, metadata; empty for ``.pth``)."""
    path = Path(path)
    if not path.is_file():
        raise AirNetError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        sd, metadata = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        sd, metadata = _read_torch(path), {}
    else:
        raise AirNetError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors or {'/'.join(TORCH_SUFFIXES)}")
    bad = next((k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise AirNetError(f"{path}: tensor {bad!r} holds NaN or infinite values; the weights are unusable (diverged training or a corrupt file)")
    return sd, metadata


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):
            raise AirNetError(f"{path}: not a readable PyTorch checkpoint (corrupt or not a checkpoint)") from None
        blocked = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "")
        raise AirNetError(
            f"{path}: refused to load: the file holds Python objects other than tensors "
            f"(only plain state dicts are accepted; nothing was executed). {blocked}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise AirNetError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first_line(e)})") from None
    # Common wrappers around the bare state dict.
    for wrapper in ("state_dict", "net", "model", "params"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AirNetError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return canonical_keys(dict(obj))



def canonical_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a DataParallel ``module.`` (or Lightning ``net.``) prefix from every key."""
    for prefix in ("module.", "net."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AirNetError(f"{path}: not a readable safetensors file ({e})") from None
    expected = metadata.get("sha256")
    if expected and expected != tensors_sha256(sd):
        raise AirNetError(f"{path}: tensor checksum mismatch: the file is corrupt or was modified")
    return sd, metadata


def tensors_sha256(sd: Mapping[str, torch.Tensor]) -> str:
    """A checksum of names, dtypes, shapes and bytes of every tensor, independent of file layout."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def infer_config(sd: Mapping[str, torch.Tensor]) -> AirNetConfig:
    """Read the widths and depths off the tensor shapes, so any official or custom checkpoint loads."""
    try:
        n_feats = sd["R.head.0.weight"].shape[0]
        groups = {int(m.group(1)) for k in sd if (m := re.match(r"R\.body\.(\d+)\.body\.", k))}
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"R\.body\.0\.body\.(\d+)\.dgm1\.", k))}
        pre = sd["E.E.encoder_q.E_pre.backbone.0.weight"].shape[0]
    except KeyError as e:
        raise AirNetError(f"not an AirNet checkpoint: key {e.args[0]!r} is missing") from None
    defaults = AirNetConfig()
    c1 = sd.get("E.E.encoder_q.E.0.backbone.0.weight")
    c2 = sd.get("E.E.encoder_q.E.1.backbone.0.weight")
    mlp = sd.get("E.E.encoder_q.mlp.2.weight")
    queue = sd.get("E.E.queue")
    return AirNetConfig(
        n_feats=n_feats,
        n_groups=len(groups),
        n_blocks=len(blocks),
        enc_channels=(
            pre,
            c1.shape[0] if c1 is not None else defaults.enc_channels[1],
            c2.shape[0] if c2 is not None else defaults.enc_channels[2],
        ),
        dim=mlp.shape[0] if mlp is not None else defaults.dim,
        queue_size=queue.shape[1] if queue is not None else defaults.queue_size,
    )


def load_into(model: AirNet, sd: Mapping[str, torch.Tensor], inference_only: bool | None = None) -> AirNet:
    """Load ``sd`` strictly; an inference-only dict must hold every inference key.

    A checkpoint that does not fit raises ``AirNetError`` naming the first mismatched keys.
    """
    own = model.state_dict()
    if inference_only is None:
        inference_only = not any(k.startswith("E.E.encoder_k.") for k in sd)
    wanted = {k for k in own if k.startswith(INFERENCE_PREFIXES)} if inference_only else set(own)
    missing = sorted(wanted - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and k != "E.E.queue" and sd[k].shape != own[k].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise AirNetError("checkpoint does not fit the architecture: " + "; ".join(problems))
    if "E.E.queue" in sd and sd["E.E.queue"].shape != own["E.E.queue"].shape:
        # The queue length follows the training batch size (official: 5/3/1); take the file's.
        q = sd["E.E.queue"]
        if q.dim() != 2 or q.shape[0] != own["E.E.queue"].shape[0]:
            raise AirNetError(f"checkpoint queue has shape {tuple(q.shape)}, expected ({own['E.E.queue'].shape[0]}, K)")
        model.E.E.queue = torch.empty(q.shape, dtype=own["E.E.queue"].dtype, device=own["E.E.queue"].device)
        model.E.E.K = q.shape[1]
    with torch.no_grad():
        for k, v in model.state_dict(keep_vars=True).items():
            if k in sd:
                v.copy_(sd[k].to(v.dtype))
    return model


def _metadata_config(path: str | os.PathLike, text: str, sd: Mapping[str, torch.Tensor]) -> AirNetConfig:
    """The config stored with the weights; refused, before any allocation, where it is malformed,
    out of bounds or sizes the restorer other than its tensors do."""
    try:
        config = AirNetConfig.from_dict(json.loads(text))
    except json.JSONDecodeError as e:
        raise AirNetError(f"{path}: unreadable config in metadata ({e})") from None
    except AirNetError as e:
        raise AirNetError(f"{path} (metadata): {e}") from None
    held = infer_config(sd)
    for name in ("n_feats", "n_groups", "n_blocks"):
        claimed, found = getattr(config, name), getattr(held, name)
        if claimed != found:
            raise AirNetError(f"{path}: config in metadata says {name}={claimed} but the tensors hold {found}")
    return config


def stored_config(path: str | os.PathLike, metadata: Mapping[str, str], sd: Mapping[str, torch.Tensor]) -> AirNetConfig:
    """The architecture of loaded weights: their metadata's config, else read off the tensor shapes."""
    return _metadata_config(path, metadata["config"], sd) if "config" in metadata else infer_config(sd)


def build_model(path: str | os.PathLike) -> tuple[AirNet, dict[str, str]]:
    """An ``AirNet`` with the weights of ``path`` (official ``.pth`` or our safetensors), and its metadata."""
    sd, metadata = load_state_dict(path)
    config = stored_config(path, metadata, sd)
    model = load_into(AirNet(config), sd, inference_only=metadata.get("contents") == "inference" or None)
    return model.eval(), metadata


def state_for_saving(model: AirNet, full: bool = False) -> dict[str, torch.Tensor]:
    """The tensors to save: everything, or only what the eval forward reads."""
    sd = model.state_dict()
    if not full:
        sd = {k: v for k, v in sd.items() if k.startswith(INFERENCE_PREFIXES)}
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def save_weights(
    model: AirNet,
    path: str | os.PathLike,
    *,
    full: bool = False,
    half: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write safetensors atomically, with the config, contents, checksum and any extra metadata.

    ``half`` stores float tensors as float16 (loaded back as float32).
    """
    sd = state_for_saving(model, full)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=FORMAT,
        config=json.dumps(model.config.to_dict()),
        contents="full" if full else "inference",
        sha256=tensors_sha256(sd),
    )
    meta.setdefault("licence", "unspecified")
    data = save(sd, metadata=meta)  # in memory: safetensors' file writer raises no OSError on a full disk
    try:
        return atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
    except OSError as e:
        raise AirNetError(f"{path}: cannot write: {e.strerror or e}") from None


def _convert_target(src: Path, dst: Path) -> Path:
    """The file ``convert`` writes: ``dst``, or ``<source name>.safetensors`` inside a folder ``dst``."""
    if dst.is_dir():
        dst = dst / f"{src.stem}.safetensors"
    if dst.suffix != ".safetensors":
        raise AirNetError(f"{dst}: convert writes safetensors; name the output *.safetensors or give a folder")
    if src.is_file() and dst.exists() and os.path.samefile(src, dst):
        raise AirNetError(f"{dst} is the source file; name another output file or folder")
    return dst


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    full: bool = False,
    half: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Official ``.pth`` (or any supported file) to our safetensors; inference keys only unless ``full``.

    ``dst`` is a ``.safetensors`` file or a folder, which gets the source's name with ``.safetensors``;
    it may not be the source itself. The source's metadata is kept, ``metadata`` adds to or replaces it.
    """
    dst = _convert_target(Path(src), Path(dst))
    if full and not any(k.startswith("E.E.encoder_k.") for k in load_state_dict(src)[0]):
        raise AirNetError(f"{src} holds inference weights only: --full needs a file with the training state (key encoder, queue)")
    model, source_meta = build_model(src)
    extra = {k: v for k, v in source_meta.items() if k not in ("format", "config", "contents", "sha256")}
    extra.setdefault("source", Path(src).name)
    extra.update(metadata or {})
    return save_weights(model, dst, full=full, half=half, metadata=extra)
