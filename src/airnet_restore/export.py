"""ONNX export (opset 19 ``DeformConv``) and the onnxruntime backend of ``airnet restore``.

The exported graph is what AirNet's eval forward runs: the restorer ``R`` and the query
encoder's first ResBlock ``E_pre``, with dynamic batch, height and width. Input and output
are float32 RGB in [0, 1], NCHW; the variant's descriptor is written into the ONNX metadata.

Two float32 implementations (ours, onnxruntime's) sum in different orders, so their outputs differ
by up to about 1e-6 and a few uint8 values in 100,000 round to the neighbouring level. A float64
export (``precision="fp64"``) run by onnxruntime and ``restore(..., precision="fp64")`` in
PyTorch agree to about 1e-15, so their uint8 outputs are identical (README, ONNX).
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from airnet_restore.atomic import atomic_write, check_can_write
from airnet_restore.errors import AirNetError, first_line
from airnet_restore.inference.tiling import available_ram
from airnet_restore.inspection.probe import METADATA_KEY as PROBE_KEY
from airnet_restore.inspection.probe import DegradationProbe
from airnet_restore.loading import ModelDescriptor, load_model
from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.postfilter import METADATA_KEY as POSTFILTER_KEY
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.variants import VARIANTS, Variant, describe
from airnet_restore.weights import load_state_dict

if TYPE_CHECKING:
    import onnx

OPSET = 19  # the first opset with DeformConv
Precision = Literal["fp32", "fp16", "fp64"]
EXPORT_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "fp32": (torch.float32, "float32"),
    "fp16": (torch.float16, "float16 (deformable convolutions in float32)"),
    "fp64": (torch.float64, "float64 (float32 input and output)"),
}
FORMAT = "airnet-restore-onnx"
INSTALL_HINT = "pip install 'airnet-restore[onnx]'"
# Peak bytes per pixel per feature channel of an onnxruntime CPU forward: airnet-lite (24
# channels) measured 6.1 kB per pixel at 256 px and 7.0 kB at 1024 px (benchmarks/onnx_speed.py, with onnxruntime's
# memory pattern, since disabled); one forward of the default weights now peaks at 5.4-5.5 kB per pixel (225-228 per
# channel; benchmarks/onnx_memory.py --forward), and a restore's process grows by about 6 kB per pixel of its tiles over all of them (issue 35,
# docs/onnx.md); sizes the tiles of the onnxruntime backend. A float64 export needs FP64_MEMORY times
# that: 11.7 kB per pixel at 512 px (2.5x float32), over 12 kB at 1024 px (killed at 12.7 GB by the OOM killer).
ORT_BYTES_PER_PIXEL_PER_CHANNEL = 300
FP64_MEMORY = 3
# onnxruntime's own CPU ceiling of one tile's forward, half the PyTorch path's CPU_FORWARD_BYTES: its forward takes
# about 4x PyTorch's memory per pixel, and a 1000x1000 restore (detectors and post-filter included) peaked at
# 1.66-1.88 GB in 384-px tiles (five processes) (issue 35: 1 MP within 2 GB; docs/onnx.md has the measurements).
ORT_FORWARD_BYTES = 1.0 * 2**30


def ort_bytes_per_pixel(config: AirNetConfig, precision: Precision) -> int:
    """Peak memory per pixel of an onnxruntime CPU forward of an export (a float16 one counts as float32)."""
    return ORT_BYTES_PER_PIXEL_PER_CHANNEL * config.n_feats * (FP64_MEMORY if precision == "fp64" else 1)


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
    """Keeps the graph's input and output float32 around a float16 or float64 network."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype)).float()


def descriptor(
    name: str, config: AirNetConfig, source: Mapping[str, str], precision: Precision, variant: Variant | None = None
) -> dict[str, str]:
    """The ONNX metadata of an export: the model's descriptor (``variant``'s, else one read from ``source``,
    the weight file's metadata) and how to feed the graph."""
    return {
        "format": FORMAT,
        **(variant or describe(name, config, source)).facts(),
        "name": name,
        "validation": source.get("validation", ""),
        "config": json.dumps(config.to_dict()),
        "precision": EXPORT_DTYPES[precision][1],
        "input": "float32 RGB in [0, 1], NCHW (batch, 3, height, width), any height and width",
        "output": "float32 RGB, NCHW, the input's shape; clamp to [0, 1]",
        "memory_per_pixel": f"{ort_bytes_per_pixel(config, precision):,} B with onnxruntime on a CPU",
    }


def export_onnx(
    model: AirNet, out: str | os.PathLike, *, precision: Precision = "fp32", metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``model``'s inference graph to ``out`` (ONNX, opset 19, dynamic batch/height/width), atomically.

    ``precision``: fp32; fp16 stores float16 weights and computes in float16 except the deformable
    convolutions (float32); fp64 computes in float64 (``float64_kernels``). The graph's input and
    output stay float32. ``metadata`` goes into the model's metadata properties (see ``descriptor``).
    """
    if precision not in EXPORT_DTYPES:
        raise AirNetError(f"unknown export precision {precision!r}; choose one of {', '.join(EXPORT_DTYPES)}")
    out = check_onnx_target(out)
    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    # The exporter maps torchvision::deform_conv2d to ONNX only if torchvision registered the operator
    # before the export starts; the DCN imports it lazily, at its first call, which is too late.
    importlib.import_module("torchvision.ops")
    # Contiguous weights: from channels-last ones (``load_model`` on a CPU) the exporter fixes the batch size.
    plain = copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format)
    net: nn.Module = InferenceNet(plain.set_dcn_impl("torchvision")).eval()
    if precision != "fp32":
        net = _CastIO(net, EXPORT_DTYPES[precision][0]).eval()
    batch, height, width = (torch.export.Dim(n, min=1) for n in ("batch", "height", "width"))
    try:
        program = torch.onnx.export(
            net, (torch.rand(1, 3, 64, 64),), dynamo=True, opset_version=OPSET, verbose=False,
            input_names=["input"], output_names=["output"], dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
        )
    except Exception as e:  # the exporter raises many types; any of them means no ONNX file
        raise AirNetError(f"ONNX export failed (torch {torch.__version__}, opset {OPSET}): {first_line(e)}") from None
    assert program is not None  # dynamo=True always returns the ONNXProgram
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]  # the exporter's debug records (stack traces, FX nodes): a quarter of the file
    if precision == "fp64":
        float64_kernels(proto.graph)
    onnx.helper.set_model_props(proto, dict(metadata or {}))
    try:
        return atomic_write(out, lambda tmp: onnx.save(proto, str(tmp)))
    except OSError as e:
        raise AirNetError(f"{out}: cannot write the ONNX model: {e.strerror or e}") from None


def check_onnx_target(out: str | os.PathLike) -> Path:
    """``out`` if an ONNX model can be written there: a ``.onnx`` name (so no weights file or photo is
    replaced by mistake), not a folder, in a folder that exists or can be made and takes a new file.
    Checked before any work; nothing is left behind."""
    out = Path(out)
    if out.is_dir():
        raise AirNetError(f"{out} is a folder; give the .onnx file to write")
    if out.suffix.lower() != ".onnx":
        raise AirNetError(f"{out}: the output must be a .onnx file (the weights to export go in --weights)")
    check_can_write(out.parent, str(out))
    return out


def float64_kernels(graph: onnx.GraphProto) -> None:
    """Rewrite a float64 graph, in place, into operators that onnxruntime's CPU runs in float64.

    It has no float64 ``Conv`` or ``LeakyRelu``: a convolution becomes a ``DeformConv`` with zero
    offsets (bilinear weights 1 and 0: the same sums), ``LeakyRelu`` becomes ``Max(x, alpha * x)``.
    Every convolution here keeps the input's height and width, so one zero-offset tensor per kernel
    size, shaped from the input, serves them all.
    """
    from onnx import TensorProto, helper, numpy_helper

    initializers = {t.name: t for t in graph.initializer}
    added = [numpy_helper.from_array(np.array([i], np.int64), f"_airnet_i{i}") for i in (0, 1, 2, 4)]
    nodes = [
        helper.make_node("Shape", [graph.input[0].name], ["_airnet_shape"]),
        helper.make_node("Slice", ["_airnet_shape", "_airnet_i0", "_airnet_i1"], ["_airnet_batch"]),
        helper.make_node("Slice", ["_airnet_shape", "_airnet_i2", "_airnet_i4"], ["_airnet_hw"]),
    ]
    zeros: dict[int, str] = {}

    def zero_offsets(k: int) -> str:
        if k not in zeros:
            zeros[k] = f"_airnet_zero_offsets_{k}"
            added.append(numpy_helper.from_array(np.array([2 * k * k], np.int64), f"_airnet_taps_{k}"))
            nodes.append(helper.make_node("Concat", ["_airnet_batch", f"_airnet_taps_{k}", "_airnet_hw"],
                                          [f"_airnet_offset_shape_{k}"], axis=0))
            nodes.append(helper.make_node("ConstantOfShape", [f"_airnet_offset_shape_{k}"], [zeros[k]],
                                          value=helper.make_tensor("zero", TensorProto.DOUBLE, [1], [0.0])))
        return zeros[k]

    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            k = initializers[node.input[1]].dims[-1]
            same = [k // 2] * 4
            if (attrs.get("pads", [0] * 4), attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1]),
                    attrs.get("group", 1)) != (same, [1, 1], [1, 1], 1) or k % 2 == 0:
                raise AirNetError(f"float64 export: convolution {node.name} is not size-preserving ({attrs})")
            inputs = [node.input[0], node.input[1], zero_offsets(k), *node.input[2:3]]
            nodes.append(helper.make_node("DeformConv", inputs, list(node.output), node.name, kernel_shape=[k, k], pads=same))
        elif node.op_type == "LeakyRelu":
            # ONNX keeps alpha as float32; PyTorch multiplies by the model's float64 slope, the
            # shortest decimal that rounds to it (0.1, not 0.10000000149).
            alpha = float(str(np.float32(attrs["alpha"])))
            if not 0 <= alpha <= 1:
                raise AirNetError(f"float64 export: LeakyRelu {node.name} has alpha {alpha}, outside [0, 1]")
            scaled = f"{node.output[0]}_scaled"
            added.append(numpy_helper.from_array(np.array(alpha, np.float64), f"{node.output[0]}_alpha"))
            nodes.append(helper.make_node("Mul", [node.input[0], f"{node.output[0]}_alpha"], [scaled]))
            nodes.append(helper.make_node("Max", [node.input[0], scaled], list(node.output), node.name))
        else:
            nodes.append(node)
    graph.initializer.extend(added)
    del graph.node[:]
    graph.node.extend(nodes)


def export_weights(weights: str | os.PathLike, out: str | os.PathLike, *, precision: Precision = "fp32") -> Path:
    """Export a registered variant or a weights file (official ``.pth`` or our safetensors) to ONNX."""
    check_onnx_target(out)  # before the weights load
    loaded = load_model(weights, device="cpu")
    model = loaded.network
    assert isinstance(model, AirNet)  # load_model loads PyTorch weights
    variant = VARIANTS.get(str(weights))
    if variant is not None:
        name, source = variant.name, _file_metadata(variant.weights_path())
    else:
        source = _file_metadata(Path(weights))
        name = source.get("variant", Path(weights).stem)
    metadata = {**descriptor(name, model.config, source, precision, variant), **stage_metadata(loaded)}
    return export_onnx(model, out, precision=precision, metadata=metadata)


# ONNX metadata key of the detectors' encoder block (the query encoder's first ResBlock), as base64 safetensors.
DETECTOR_KEY = "detector_encoder"


def stage_metadata(loaded: ModelDescriptor) -> dict[str, str]:
    """What the onnxruntime backend needs to restore as PyTorch does: the post-filter's parameters and, where the
    weights have detectors, their probe and the small encoder block they read (run in PyTorch)."""
    out = {POSTFILTER_KEY: loaded.postfilter.params.to_json()}
    if loaded.probe is not None and isinstance(loaded.network, AirNet) and loaded.detects:
        block = {k: v.detach().cpu().contiguous() for k, v in loaded.network.E.E.encoder_q.E_pre.state_dict().items()}
        out[PROBE_KEY] = loaded.probe.to_json()
        out[DETECTOR_KEY] = base64.b64encode(save_tensors(block)).decode("ascii")
    return out


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> ModelDescriptor:
    """The descriptor of an exported model run by onnxruntime: the post-filter with the parameters its metadata
    holds, and its detectors where the export carried them (exports made before they were: none, so
    ``strength="auto"`` restores fully, with a warning)."""
    net = OnnxRestorer(path, threads)
    meta = net.metadata
    params = PostFilterParams.from_metadata(meta, str(path))
    variant = describe(meta.get("name", Path(path).stem), net.config, meta)
    if PROBE_KEY not in meta or DETECTOR_KEY not in meta:
        warnings.warn(f"{path}: this export carries no detectors: re-export it with `airnet export` so that strength "
                      "auto can leave clean photos alone", stacklevel=2)
        return ModelDescriptor(net, variant, None, PostFilter(params), str(path))
    try:
        probe = DegradationProbe.from_json(meta[PROBE_KEY], str(path))
        detector = AirNet(replace(net.config, queue_size=1)).eval()
        detector.E.E.encoder_q.E_pre.load_state_dict(load_tensors(base64.b64decode(meta[DETECTOR_KEY], validate=True)))
    except (ValueError, RuntimeError, SafetensorError) as e:
        raise AirNetError(f"{path}: unreadable detectors in its metadata ({first_line(e)}); re-export it") from None
    return ModelDescriptor(net, variant, probe, PostFilter(params), str(path), detector=detector)


def _file_metadata(path: Path | None) -> dict[str, str]:
    return load_state_dict(path)[1] if path is not None else {}



@functools.cache
def _register_arena(ort: ModuleType) -> None:
    """Register, once per process, the CPU arena that ``OnnxRestorer`` sessions share: extended by what is requested
    (onnxruntime's default doubles each extension). With it and the shrinkage after each run, a 1000x1000 restore in
    384-px tiles peaked at 1.66-1.88 GB; with the shrinkage alone 1.86-2.59 GB (issue 35, docs/onnx.md)."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # 1: kSameAsRequested
    except Exception as e:  # onnxruntime's exception types share no base but Exception; sessions then use their own
        warnings.warn(f"onnxruntime {ort.__version__}: no shared arena ({first_line(e)}); restoring takes more memory",
                      stacklevel=3)


class OnnxRestorer(nn.Module):
    """An exported AirNet run by onnxruntime on CPU; the restore pipeline calls it like ``AirNet``.

    ``config`` and ``metadata`` come from the ONNX metadata written by ``export_onnx``.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime", "the onnxruntime backend")
        path = self.path = Path(path)
        if not path.is_file():
            raise AirNetError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # No memory pattern: with it, the second run of a shape allocates the whole plan as one block beside the
        # first run's freed chunks, and a 1 MP restore's peak grew by about 1.2 GB (issue 35, docs/onnx.md).
        options.enable_mem_pattern = False
        # The arena gives its memory back after each run (``run_options``), so the post-filter and the detectors, which
        # run in PyTorch after the tiles, reuse it; it grows by what each tensor needs (kSameAsRequested, not powers of
        # two), so the next tile's run finds room where the last one's was rather than growing the heap.
        options.add_session_config_entry("session.use_env_allocators", "1")
        _register_arena(ort)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's exception types share no base but Exception
            if "DeformConv" in str(e):
                raise AirNetError(
                    f"onnxruntime {ort.__version__} has no DeformConv (opset {OPSET}) kernel; upgrade it: {INSTALL_HINT}"
                ) from None
            raise AirNetError(f"{path}: onnxruntime {ort.__version__} cannot load it: {first_line(e)}") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("format") != FORMAT:
            raise AirNetError(f"{path}: not an airnet export (no {FORMAT!r} metadata); make one with `airnet export`")
        self.config = AirNetConfig.from_dict(json.loads(self.metadata["config"]))
        self.input_name = self.session.get_inputs()[0].name
        precision: Precision = "fp64" if self.metadata.get("precision") == EXPORT_DTYPES["fp64"][1] else "fp32"
        self.bytes_per_pixel = ort_bytes_per_pixel(self.config, precision)  # a forward's peak: sizes the tiles
        self.forward_bytes = ORT_FORWARD_BYTES  # within which the tiler keeps them
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore (B,3,H,W) floats; returns float32 on CPU, unclamped like ``AirNet``.

        A tile that would not fit in half the available memory raises an out-of-memory
        ``RuntimeError`` before it runs (a real one would kill the process), so the tiler splits it.
        """
        needed = x.shape[0] * x.shape[-2] * x.shape[-1] * self.bytes_per_pixel
        if needed > 0.5 * available_ram():
            raise RuntimeError(f"out of memory: onnxruntime would need about {needed / 2**30:.1f} GiB for this tile")
        feed = np.ascontiguousarray(x.detach().cpu().float().numpy())
        try:
            out = self.session.run(None, {self.input_name: feed}, self.run_options)[0]
        except Exception as e:  # onnxruntime's exception types share no base but Exception
            if "allocate" in str(e).lower():
                raise RuntimeError(f"out of memory in onnxruntime: {first_line(e)}") from None  # the tiler retries smaller
            raise AirNetError(f"onnxruntime failed: {first_line(e)}") from None
        return torch.from_numpy(out)
