"""Device selection from a user string: auto, cpu, cuda, cuda:N, mps."""

from __future__ import annotations

from typing import TypeVar

import torch

from airnet_restore.errors import AirNetError

Module = TypeVar("Module", bound=torch.nn.Module)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` = CUDA if present, else MPS, else CPU; an unavailable device is a clear error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise AirNetError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AirNetError(f"device {spec!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AirNetError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AirNetError("device 'mps' requested but MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise AirNetError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def inference_layout(network: Module, device: torch.device) -> Module:
    """On a CPU, ``network``'s weights in channels-last (in place; values unchanged): with contiguous weights a
    convolution of a channels-last input answers in the contiguous layout, so the network ran mostly
    channels-first, every deformable convolution copied its input to channels-last and every sum with its
    output mixed the two layouts (the forward 1.2-1.4x slower at a megapixel: benchmarks/README.md, "The
    deformable convolution fused"). Other devices keep the layout they have. ``load_model`` applies it;
    ``restore_tensor`` leaves a caller's own module as it is, so code that builds its network calls this itself."""
    if device.type == "cpu":
        network.to(memory_format=torch.channels_last)
    return network
