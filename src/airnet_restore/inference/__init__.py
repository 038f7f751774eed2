"""Restoration of user images: tiling and the pipeline (image files: ``airnet_restore.image_io``)."""

from airnet_restore.inference.pipeline import (
    RestoreReport,
    check_output_folder,
    plan_outputs,
    restore,
    restore_files,
    restore_tensor,
)

__all__ = ["RestoreReport", "check_output_folder", "plan_outputs", "restore", "restore_files", "restore_tensor"]
