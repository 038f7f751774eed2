"""Restoration of user images: file io, tiling, the pipeline."""

from airnet_restore.restore.pipeline import RestoreReport, restore, restore_files, restore_tensor

__all__ = ["RestoreReport", "restore", "restore_files", "restore_tensor"]
