"""Degradation identification from the CBDE embedding: what is wrong with an image, and how badly.

``features`` (statistics of the encoder's degradation map), ``probe`` (detectors and level
regressions stored in the weights' metadata), ``calibrate`` (fitting the probe for given
weights), ``inspector`` (inspect images and files) and ``plot`` (embedding plot, region map).
"""

from airnet_restore.inspection.calibrate import CalibrationReport, calibrate
from airnet_restore.inspection.inspector import (
    Inspection,
    Inspector,
    InspectReport,
    RegionMap,
    attach_probe,
    inspect,
    inspect_files,
    model_inspector,
)
from airnet_restore.inspection.plot import plot_embedding, write_region_map
from airnet_restore.inspection.probe import DegradationProbe

__all__ = [
    "CalibrationReport", "DegradationProbe", "InspectReport", "Inspection", "Inspector", "RegionMap",
    "attach_probe", "calibrate", "inspect", "inspect_files", "model_inspector", "plot_embedding", "write_region_map",
]
