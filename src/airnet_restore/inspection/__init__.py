"""Degradation identification from the CBDE embedding: what is wrong with an image, and how badly.

``features`` (statistics of the encoder's degradation map), ``probe`` (detectors and level
regressions stored in the weights' metadata), ``calibrate`` (fitting the probe for given
weights), ``inspector`` (inspect images and files) and ``plot`` (embedding plot, region map).
The loaded weights' detectors: ``loading.ModelDescriptor.inspector``; one image with any weights:
``loading.inspect``.
"""

from airnet_restore.inspection.calibrate import CalibrationReport, calibrate
from airnet_restore.inspection.inspector import Inspector, InspectReport, inspect_files
from airnet_restore.inspection.plot import plot_embedding, write_region_map
from airnet_restore.inspection.probe import DegradationProbe
from airnet_restore.inspection.results import Inspection, RegionMap

__all__ = [
    "CalibrationReport", "DegradationProbe", "InspectReport", "Inspection", "Inspector", "RegionMap",
    "calibrate", "inspect_files", "plot_embedding", "write_region_map",
]
