"""Restoration of user images: tiling and the pipeline (image files: ``airnet_restore.image_io``;
which files a batch reads and writes: ``airnet_restore.files``)."""

from airnet_restore.files import check_output_folder, plan_outputs
from airnet_restore.inference.pipeline import RestoreReport, restore, restore_files, restore_tensor

__all__ = ["RestoreReport", "check_output_folder", "plan_outputs", "restore", "restore_files", "restore_tensor"]
