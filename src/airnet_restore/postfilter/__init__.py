"""The post-filter stage: what reaches the output of the network's correction (``stage``), the noise model's
Wiener filter (``wiener``) and the stage's tuned numbers, stored with each weights file (``params``)."""

from airnet_restore.postfilter.params import METADATA_KEY, PostFilterParams, WienerSettings
from airnet_restore.postfilter.stage import Blend, Choice, Crop, Fraction, PostFilter, check_choice, check_fraction

__all__ = ["METADATA_KEY", "Blend", "Choice", "Crop", "Fraction", "PostFilter", "PostFilterParams", "WienerSettings",
           "check_choice", "check_fraction"]
