"""airnet-restore: all-in-one image restoration (AirNet, CVPR 2022) for unknown corruption."""

from airnet_restore.errors import AirNetError
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.restore import restore, restore_files
from airnet_restore.variants import list_variants, load_model

__version__ = "0.1.0"

__all__ = ["AirNet", "AirNetConfig", "AirNetError", "list_variants", "load_model", "restore", "restore_files", "__version__"]
