"""ONNX export (opset 19 ``DeformConv``) and the onnxruntime backend of ``airnet restore``.

The exported graph is what AirNet's eval forward runs: the restorer ``R`` and the query
encoder's first ResBlock ``E_pre``, with dynamic batch, height and width. Input and output
are float32 RGB in [0, 1], NCHW; the variant's descriptor is written into the ONNX metadata.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from airnet_restore.atomic import atomic_write
from airnet_restore.constants import DEFAULT_OVERLAP
from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.inference.pipeline import MIN_SIDE
from airnet_restore.inference.tiling import available_ram
from airnet_restore.variants import VARIANTS, load_model
from airnet_restore.weights import load_state_dict

OPSET = 19  # the first opset with DeformConv
FORMAT = "airnet-restore-onnx"
INSTALL_HINT = "pip install 'airnet-restore[onnx]'"
# Peak bytes per pixel per feature channel of an onnxruntime CPU forward: airnet-lite (24
# channels) measured 6.1 kB per pixel at 256 px and 7.0 kB at 1024 px (benchmarks/onnx_speed.py),
# 8x our PyTorch path; sizes the tiles of the onnxruntime backend.
ORT_BYTES_PER_PIXEL_PER_CHANNEL = 300


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise a one-line ``AirNetError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AirNetError(f"{purpose} needs the {module} package: {INSTALL_HINT}") from None


class InferenceNet(nn.Module):
    """The part of AirNet that inference runs: the restorer conditioned on ``E_pre(x)``."""

    def __init__(self, model: AirNet) -> None:
        super().__init__()
        self.R = model.R
        self.E_pre = model.E.E.encoder_q.E_pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.R(x, self.E_pre(x))


class _CastIO(nn.Module):
    """Keeps the graph's input and output float32 around a float16 network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def descriptor(name: str, config: AirNetConfig, source: Mapping[str, str], half: bool) -> dict[str, str]:
    """The ONNX metadata of an export: who the model is and how to feed it."""
    return {
        "format": FORMAT,
        "name": name,
        "description": source.get("description", ""),
        "licence": source.get("licence", "unspecified"),
        "training": source.get("training_data", source.get("source", "unknown")),
        "validation": source.get("validation", ""),
        "config": json.dumps(config.to_dict()),
        "precision": "float16 (deformable convolutions in float32)" if half else "float32",
        "input": "float32 RGB in [0, 1], NCHW (batch, 3, height, width), any height and width",
        "output": "float32 RGB, NCHW, the input's shape; clamp to [0, 1]",
        "min_size": f"{MIN_SIDE}: reflect-pad smaller sides to {MIN_SIDE} px and crop the output back",
        "tiling": f"the restorer is local, so tiles are sound: overlap tiles by {DEFAULT_OVERLAP} px and "
        f"cross-fade the overlaps (as `airnet restore --backend onnxruntime` does); memory grows with tile area",
    }


def export_onnx(
    model: AirNet, out: str | os.PathLike, *, half: bool = False, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``model``'s inference graph to ``out`` (ONNX, opset 19, dynamic batch/height/width), atomically.

    ``half`` stores float16 weights and computes in float16 except the deformable convolutions
    (float32); the graph's input and output stay float32. ``metadata`` goes into the model's
    metadata properties (see ``descriptor``).
    """
    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    net: nn.Module = InferenceNet(copy.deepcopy(model).cpu().float().set_dcn_impl("torchvision")).eval()
    if half:
        net = _CastIO(net.half()).eval()
    batch, height, width = (torch.export.Dim(n, min=1) for n in ("batch", "height", "width"))
    try:
        program = torch.onnx.export(
            net, (torch.rand(1, 3, 64, 64),), dynamo=True, opset_version=OPSET, verbose=False,
            input_names=["input"], output_names=["output"], dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
        )
    except Exception as e:  # the exporter raises many types; any of them means no ONNX file
        raise AirNetError(f"ONNX export failed (torch {torch.__version__}, opset {OPSET}): {_first_line(e)}") from None
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]  # the exporter's debug records (stack traces, FX nodes): a quarter of the file
    onnx.helper.set_model_props(proto, dict(metadata or {}))
    return atomic_write(Path(out), lambda tmp: onnx.save(proto, str(tmp)))


def export_weights(weights: str | os.PathLike, out: str | os.PathLike, *, half: bool = False) -> Path:
    """Export a registered variant or a weights file (official ``.pth`` or our safetensors) to ONNX."""
    model = load_model(weights, device="cpu")
    if str(weights) in VARIANTS:
        name, source = str(weights), _file_metadata(VARIANTS[str(weights)].weights_path())
    else:
        source = _file_metadata(Path(weights))
        name = source.get("variant", Path(weights).stem)
    return export_onnx(model, out, half=half, metadata=descriptor(name, model.config, source, half))


def _file_metadata(path: Path | None) -> dict[str, str]:
    return load_state_dict(path)[1] if path is not None else {}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class OnnxRestorer(nn.Module):
    """An exported AirNet run by onnxruntime on CPU; the restore pipeline calls it like ``AirNet``.

    ``config`` and ``metadata`` come from the ONNX metadata written by ``export_onnx``.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime", "the onnxruntime backend")
        path = Path(path)
        if not path.is_file():
            raise AirNetError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's exception types share no base but Exception
            if "DeformConv" in str(e):
                raise AirNetError(
                    f"onnxruntime {ort.__version__} has no DeformConv (opset {OPSET}) kernel; upgrade it: {INSTALL_HINT}"
                ) from None
            raise AirNetError(f"{path}: onnxruntime {ort.__version__} cannot load it: {_first_line(e)}") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("format") != FORMAT:
            raise AirNetError(f"{path}: not an airnet export (no {FORMAT!r} metadata); make one with `airnet export`")
        self.config = AirNetConfig.from_dict(json.loads(self.metadata["config"]))
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore (B,3,H,W) floats; returns float32 on CPU, unclamped like ``AirNet``.

        A tile that would not fit in half the available memory raises an out-of-memory
        ``RuntimeError`` before it runs (a real one would kill the process), so the tiler splits it.
        """
        needed = x.shape[0] * x.shape[-2] * x.shape[-1] * ORT_BYTES_PER_PIXEL_PER_CHANNEL * self.config.n_feats
        if needed > 0.5 * available_ram():
            raise RuntimeError(f"out of memory: onnxruntime would need about {needed / 2**30:.1f} GiB for this tile")
        feed = np.ascontiguousarray(x.detach().cpu().float().numpy())
        try:
            out = self.session.run(None, {self.input_name: feed})[0]
        except Exception as e:  # onnxruntime's exception types share no base but Exception
            if "allocate" in str(e).lower():
                raise RuntimeError(f"out of memory in onnxruntime: {_first_line(e)}") from None  # the tiler retries smaller
            raise AirNetError(f"onnxruntime failed: {_first_line(e)}") from None
        return torch.from_numpy(out)
