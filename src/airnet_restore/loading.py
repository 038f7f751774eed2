"""Loading weights into a ``ModelDescriptor``: the network with everything a caller must know to use it.

In the manner of spandrel's ``ModelDescriptor``: the network (PyTorch ``AirNet`` or an onnxruntime
``OnnxRestorer``), its variant (architecture, licence, smallest input, memory per pixel), its
detectors (the degradation probe its weights file holds, if any) and its post-filter (the
parameters its weights file holds, else the defaults). The restore pipeline, the tiler and the
padding read these facts here; nothing is attached to the network on the side.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from airnet_restore.constants import CPU_FORWARD_BYTES, DEFAULT_VARIANT, Impl
from airnet_restore.device import inference_layout, resolve_device
from airnet_restore.errors import AirNetError
from airnet_restore.inspection.calibrate import read_metadata
from airnet_restore.inspection.features import encoder_fingerprint
from airnet_restore.inspection.inspector import Inspector
from airnet_restore.inspection.probe import METADATA_KEY as PROBE_KEY
from airnet_restore.inspection.probe import DegradationProbe
from airnet_restore.inspection.results import Inspection
from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.ops.deform_conv import check_impl
from airnet_restore.postfilter import METADATA_KEY as POSTFILTER_KEY
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.variants import VARIANTS, Variant, describe
from airnet_restore.weights import build_model


@dataclass(frozen=True, eq=False)
class ModelDescriptor:
    """A loaded network and its facts: ``variant`` (architecture, smallest side, memory per pixel), ``probe``
    (its detectors; None: it cannot judge images, so ``strength="auto"`` restores fully) and ``postfilter``
    (the stage with its weights' parameters); ``source``: the name or file it was loaded from; ``detector``: a
    PyTorch model holding the encoder block the detectors read, where ``network`` is not one (onnxruntime)."""

    network: nn.Module
    variant: Variant
    probe: DegradationProbe | None = None
    postfilter: PostFilter = field(default_factory=PostFilter)
    source: str = ""
    detector: AirNet | None = None

    @property
    def device(self) -> torch.device:
        """Where the network runs; CPU for one without torch parameters (the onnxruntime backend)."""
        param = next(self.network.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def min_side(self) -> int:
        """Sides under this are reflect-padded to it before the network runs and cropped back."""
        return self.variant.min_side

    def bytes_per_pixel(self, device: torch.device) -> int:
        """Peak bytes one pixel of a tile takes in an inference forward on ``device`` (sizes the tiles)."""
        own = getattr(self.network, "bytes_per_pixel", None)  # an onnxruntime session measures its own
        return int(own) if isinstance(own, int) else self.variant.bytes_per_pixel(device)

    @property
    def forward_bytes(self) -> float:
        """The CPU ceiling of one tile's forward: the network's own (an onnxruntime session has a lower one) or the
        tiler's ``CPU_FORWARD_BYTES``."""
        own = getattr(self.network, "forward_bytes", None)
        return float(own) if isinstance(own, (int, float)) else CPU_FORWARD_BYTES

    @property
    def detects(self) -> bool:
        """Whether the weights can judge an image (a probe that fits the network's encoder)."""
        return self.inspector() is not None

    def inspector(self) -> Inspector | None:
        """The detectors as an ``Inspector``, or None where the weights have none that fit their encoder."""
        encoder = self.detector if self.detector is not None else self.network
        if self.probe is None or not isinstance(encoder, AirNet):
            return None
        try:  # checked each time: the network's weights may have changed since it was loaded
            return Inspector(encoder, self.probe)
        except AirNetError:  # computed for another encoder
            return None

    def inspect(self, image: Any) -> Inspection | None:
        """What the detectors find in ``image``; None where the weights have no detectors or the image is too
        small to judge (see ``Inspector.inspect`` for what an image may be)."""
        inspector = self.inspector()
        if inspector is None:
            return None
        try:
            return inspector.inspect(image)
        except AirNetError:  # too small to inspect
            return None


def load_model(name_or_path: str | os.PathLike[str], device: str = "auto", dcn_impl: Impl = "auto") -> ModelDescriptor:
    """The descriptor of a registered variant (weights checked) or a weights file, its eval-mode network on
    ``device``. Detectors this version cannot read are left out with a warning (the weights still restore,
    without detection: strength auto = 1); post-filter parameters it cannot read are an ``AirNetError``."""
    target = resolve_device(device)
    check_impl(dcn_impl, target)
    name = str(name_or_path)
    if name in VARIANTS:
        variant = VARIANTS[name]
        path = variant.checked_weights()
    elif Path(name_or_path).suffix or Path(name_or_path).exists():
        path = Path(name_or_path)
        variant = None
    else:
        raise AirNetError(f"{name!r} is neither a registered variant ({', '.join(VARIANTS)}) nor a weights file")
    model, metadata = build_model(path)
    network = inference_layout(model.set_dcn_impl(dcn_impl).to(target).eval(), target)
    variant = variant or describe(Path(name).stem, network.config, metadata)
    return ModelDescriptor(network, variant, _probe(metadata, name), PostFilter(PostFilterParams.from_metadata(metadata, name)),
                           name)


def _probe(metadata: dict[str, str], source: str) -> DegradationProbe | None:
    """The probe a weights file's metadata holds; None where it holds none or one this version cannot read
    (another version, a damaged file), with a warning."""
    if PROBE_KEY not in metadata:
        return None
    try:
        return DegradationProbe.from_json(metadata[PROBE_KEY], source)
    except AirNetError as e:
        warnings.warn(f"{source}: degradation prototypes not used ({e})", stacklevel=3)
        return None


def as_descriptor(model: ModelDescriptor | nn.Module) -> ModelDescriptor:
    """``model`` as a descriptor: a descriptor as it is; a bare ``AirNet`` with the detectors and post-filter of
    the registered variant with the same encoder (none and the defaults where no variant has it); another
    backend's bare network with no detectors (the onnxruntime backend's full descriptor: ``export.load_onnx``)."""
    if isinstance(model, ModelDescriptor):
        return model
    if isinstance(model, AirNet):
        found = registered_extras().get(encoder_fingerprint(model))
        if found is not None:
            variant, probe, params = found
            return ModelDescriptor(model, variant, probe, PostFilter(params), variant.name)
        return ModelDescriptor(model, describe("custom", model.config, {}))
    config = getattr(model, "config", None)
    if isinstance(model, nn.Module) and isinstance(config, AirNetConfig):  # another backend's network, bare
        metadata = getattr(model, "metadata", {})
        return ModelDescriptor(model, describe("custom", config, metadata), None,
                               PostFilter(PostFilterParams.from_metadata(metadata)))
    raise AirNetError(f"expected a model from load_model (or export.load_onnx) or an AirNet, got {type(model).__name__}")


def detector_metadata(donor: str | os.PathLike[str], network: AirNet) -> dict[str, str]:
    """The detectors (probe) and post-filter parameters of ``donor`` (a registered variant or a weights file) as
    metadata entries for ``network``, which must have the donor's encoder (fine-tuned with ``train.freeze:
    [encoder]``); a one-line ``AirNetError`` where the donor has no detectors or its encoder differs."""
    name = str(donor)
    path = VARIANTS[name].checked_weights() if name in VARIANTS else Path(donor)
    metadata = read_metadata(path)
    if PROBE_KEY not in metadata:
        raise AirNetError(f"{name}: holds no detectors to copy")
    probe = DegradationProbe.from_json(metadata[PROBE_KEY], name)
    if probe.encoder_sha256 != encoder_fingerprint(network):
        raise AirNetError(f"{name}: its detectors were computed for another encoder; fine-tune with train.freeze: [encoder] "
                          "to keep them, or run airnet inspect --calibrate")
    params = PostFilterParams.from_metadata(metadata, name)
    return {PROBE_KEY: metadata[PROBE_KEY], POSTFILTER_KEY: params.to_json()}


@lru_cache(maxsize=1)
def registered_extras() -> dict[str, tuple[Variant, DegradationProbe, PostFilterParams]]:
    """encoder fingerprint -> (variant, probe, post-filter parameters) for every registered variant whose
    bundled weights hold a probe; where several share an encoder (new detectors for the same network), the
    default variant's, else the first registered."""
    found: dict[str, tuple[Variant, DegradationProbe, PostFilterParams]] = {}
    for variant in sorted(VARIANTS.values(), key=lambda v: v.name != DEFAULT_VARIANT):
        path = variant.weights_path()
        metadata = read_metadata(path) if path is not None else {}
        if PROBE_KEY in metadata:
            probe = DegradationProbe.from_json(metadata[PROBE_KEY], str(path))
            found.setdefault(probe.encoder_sha256, (variant, probe, PostFilterParams.from_metadata(metadata, str(path))))
    return found


@lru_cache(maxsize=4)
def default_model(device: str = "auto") -> ModelDescriptor:
    """The default variant's bundled weights, loaded once per device."""
    return load_model(DEFAULT_VARIANT, device=device)


def inspect(image: Any, model: Inspector | ModelDescriptor | AirNet | str | os.PathLike | None = None) -> Inspection:
    """What is wrong with ``image`` (array, PIL image, (3,H,W) tensor or path), and how badly.

    ``model``: an ``Inspector``, a descriptor (``load_model``), a variant name or weights file holding detectors
    (default: the default variant), or a bare ``AirNet`` (with the detectors of the registered variant with the
    same encoder). One encoder pass, no restoration; weights without detectors are an ``AirNetError``."""
    if isinstance(model, Inspector):
        return model.inspect(image)
    if model is None or isinstance(model, (str, os.PathLike)):
        desc = _cached_model(str(model if model is not None else DEFAULT_VARIANT))
    else:
        desc = as_descriptor(model)
    inspector = desc.inspector()
    if inspector is None:
        raise AirNetError(f"{desc.source or desc.variant.name}: no degradation prototypes for this model's encoder: "
                          "compute them with `airnet inspect --calibrate`")
    return inspector.inspect(image)


@lru_cache(maxsize=4)
def _cached_model(name: str) -> ModelDescriptor:
    return load_model(name)
