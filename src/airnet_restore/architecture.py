"""The configuration that sizes AirNet (widths, depths, the encoder's queue), checked before anything is allocated.

Torch-free, so that what only reads configurations (``airnet info``, the variant registry) starts without
importing torch; ``models/airnet.py`` builds the network from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from airnet_restore.errors import AirNetError

# Sizes a config may ask for: generous multiples of the paper's (64, 5, 5, 64/128/256, 256, 1280),
# so that no file or typo can allocate more than about 4 GB (the largest: 0.9 G parameters).
SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "n_feats": (1, 256),
    "n_groups": (1, 16),
    "n_blocks": (1, 16),
    "enc_channels": (1, 1024),
    "dim": (1, 1024),
    "queue_size": (1, 65536),
}


@dataclass(frozen=True)
class AirNetConfig:
    """Widths and depths; the defaults are the paper's (8,930,313 parameters, queue 256 x 1280)."""

    n_feats: int = 64
    n_groups: int = 5
    n_blocks: int = 5
    enc_channels: tuple[int, int, int] = (64, 128, 256)
    dim: int = 256
    queue_size: int = 256 * 5
    m: float = 0.999
    T: float = 0.07
    global_residual: bool = False  # not the paper's: restorer output + input (see DGRN)
    sft: bool = True  # paper Table 7: False drops the SFT modulation from every DGM
    dcn: bool = True  # paper Table 7: False puts a plain 3x3 conv in every DGM's DCN place

    def __post_init__(self) -> None:
        if isinstance(self.enc_channels, list):
            object.__setattr__(self, "enc_channels", tuple(self.enc_channels))
        self.validate()

    def validate(self) -> None:
        """Refuse a wrong type or a size out of ``SIZE_BOUNDS`` before anything is allocated."""
        for name, (low, high) in SIZE_BOUNDS.items():
            value = getattr(self, name)
            many = name == "enc_channels"
            values = value if many and isinstance(value, tuple) else (value,)
            if (many and len(values) != 3) or not all(_is_int(v) and low <= v <= high for v in values):
                what = "three integers" if many else "an integer"
                raise AirNetError(f"model config: {name} must be {what} from {low} to {high:,}, got {value!r}")
        for name, ok, rule in (("m", lambda v: 0 <= v <= 1, "from 0 to 1"), ("T", lambda v: 0 < v < math.inf, "above 0")):
            value = getattr(self, name)
            if not (_is_int(value) or isinstance(value, float)) or not ok(value):
                raise AirNetError(f"model config: {name} must be a number {rule}, got {value!r}")
        for name in ("global_residual", "sft", "dcn"):
            if not isinstance(getattr(self, name), bool):
                raise AirNetError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AirNetConfig:
        if not isinstance(d, dict):
            raise AirNetError(f"model config: expected a mapping of keys to values, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AirNetError(f"model config: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
