"""Classical baselines shown beside the model in every evaluation table."""

from __future__ import annotations

import numpy as np

from airnet_restore.baselines.dcp import dehaze_dcp
from airnet_restore.errors import AirNetError


def cbm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """CBM3D (the ``bm3d`` package) on RGB float in [0, 1], given the noise sigma on the 0-255 scale."""
    try:
        import bm3d
    except ImportError:
        raise AirNetError("the CBM3D baseline needs the bm3d package: pip install 'airnet-restore[eval]'") from None
    return np.clip(bm3d.bm3d_rgb(noisy.astype(np.float64), sigma / 255.0), 0.0, 1.0)


__all__ = ["cbm3d", "dehaze_dcp"]
