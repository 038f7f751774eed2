"""What inspection finds: the detected corruption of one image (``Inspection``) and its map of regions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RegionMap:
    """Per-region results: ``types`` (rows x cols names), ``confidence`` and ``sigma`` (NaN where no noise)."""

    region: int  # pixels per side of a region
    types: list[list[str]]
    confidence: np.ndarray
    sigma: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "region_px": self.region,
            "types": self.types,
            "confidence": np.round(self.confidence, 3).tolist(),
            "sigma": [[None if np.isnan(s) else round(float(s), 1) for s in row] for row in self.sigma],
        }


@dataclass
class Inspection:
    """The detected corruption of one image."""

    type: str  # clean, noise, rain, haze or a mixture such as haze+noise
    confidence: float  # in [0, 1]
    sigma: float | None  # noise standard deviation on the 0-255 scale, where noise is detected
    haze_density: float | None  # 1 - mean transmission, where haze is detected
    presence: dict[str, float]  # probability of each family the weights were calibrated on
    file: str | None = None
    regions: RegionMap | None = None
    features: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: file, type, confidence, sigma, haze_density, presence (and regions with a map)."""
        out: dict[str, Any] = {
            "file": self.file,
            "type": self.type,
            "confidence": round(self.confidence, 3),
            "sigma": None if self.sigma is None else round(self.sigma, 1),
            "haze_density": None if self.haze_density is None else round(self.haze_density, 3),
            "presence": {k: round(v, 3) for k, v in self.presence.items()},
        }
        if self.regions is not None:
            out["regions"] = self.regions.to_dict()
        return out

    @property
    def degraded(self) -> float:
        """Probability that the image holds any corruption at all: the largest family presence.
        ``airnet restore`` scales its correction by it (``strength="auto"``), so a photo found surely
        clean comes back nearly unchanged."""
        return max(self.presence.values(), default=1.0)

    def summary(self) -> str:
        """One line: ``noise (confidence 0.97, sigma 24.6)``."""
        parts = [f"confidence {self.confidence:.2f}"]
        if self.sigma is not None:
            parts.append(f"sigma {self.sigma:.1f}")
        if self.haze_density is not None:
            parts.append(f"haze density {self.haze_density:.2f}")
        return f"{self.type} ({', '.join(parts)})"


def count_types(results: Iterable[Inspection]) -> str:
    """How many of ``results`` have each detected type, most first: ``2 noise, 1 clean`` ('' for none)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.type] = counts.get(r.type, 0) + 1
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))
