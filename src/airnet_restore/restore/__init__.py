"""Restoration of user images: file io, tiling, the pipeline."""

from airnet_restore.restore.pipeline import (
    RestoreReport,
    check_output_folder,
    plan_outputs,
    restore,
    restore_files,
    restore_tensor,
)

__all__ = ["RestoreReport", "check_output_folder", "plan_outputs", "restore", "restore_files", "restore_tensor"]
