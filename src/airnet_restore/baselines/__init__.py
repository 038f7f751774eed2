"""Classical baselines shown beside the model in every evaluation table."""

from __future__ import annotations

from airnet_restore.baselines.dcp import dehaze_dcp
from airnet_restore.baselines.denoise import cbm3d, cbm3d_blind, estimate_sigma, is_grey, nlm, wavelet

__all__ = ["cbm3d", "cbm3d_blind", "dehaze_dcp", "estimate_sigma", "is_grey", "nlm", "wavelet"]
