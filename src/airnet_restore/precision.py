"""Numeric precision: one vocabulary (``fp32``, ``fp16``, ``bf16``, ``fp64``) for restoring and training.

fp16 and bf16 are autocast (deformable convolutions sample in fp32; under bf16 on a CPU their matrix product
runs in bf16 at inference, see ``DCNLayer``); fp64 runs a float64
copy of the model (restoring only); fp32 is plain float32.
"""

from __future__ import annotations

import torch

from airnet_restore.constants import PRECISIONS, Precision
from airnet_restore.errors import AirNetError

AUTOCAST: dict[Precision, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(name: str) -> Precision:
    """``name`` if it is a precision, else a one-line ``AirNetError`` listing them."""
    if name not in PRECISIONS:
        raise AirNetError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def autocast(device: torch.device, precision: Precision) -> torch.autocast:
    """Autocast on ``device`` for fp16 and bf16; off for fp32 and fp64."""
    dtype = AUTOCAST.get(check_precision(precision))
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
