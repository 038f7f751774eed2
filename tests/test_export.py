"""ONNX export and the onnxruntime backend: parity with the PyTorch forward (float32: within 1e-4;
float64: identical uint8), the pipeline, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.export import FORMAT, OnnxRestorer, descriptor, export_onnx
from airnet_restore.inference import restore, restore_tensor
from airnet_restore.weights import save_weights
from tests.conftest import TINY, make_tiny

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason=f"{_module} is not installed (pip install 'airnet-restore[onnx]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[torch.nn.Module, OnnxRestorer]:
    """The tiny model (torchvision's DCN, the reference: no JIT wait) and its export, run by onnxruntime."""
    model = make_tiny().set_dcn_impl("torchvision").eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path, metadata=descriptor("tiny", TINY, {"licence": "CC0"}, "fp32"))
    return model, OnnxRestorer(path, threads=2)


@pytest.fixture(scope="module")
def exported64(tmp_path_factory) -> OnnxRestorer:
    """The tiny model's float64 export, run by onnxruntime."""
    path = tmp_path_factory.mktemp("onnx") / "tiny64.onnx"
    return OnnxRestorer(export_onnx(make_tiny(), path, precision="fp64", metadata=descriptor("tiny", TINY, {}, "fp64")))


@pytest.mark.slow  # about 15 s: a new Python process exports (CI runs -m slow)
def test_export_works_in_a_fresh_process(tmp_path):
    """The exporter maps torchvision's operator only if torchvision registered it first, and the DCN
    imports torchvision lazily: `airnet export` as a new process is the case that broke."""
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    run = subprocess.run([sys.executable, "-m", "airnet_restore", "export", str(tmp_path / "tiny.onnx"), "--weights", str(weights)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "tiny.onnx").is_file()


@pytest.mark.parametrize("shape", [(1, 3, 33, 47), (2, 3, 40, 31), (1, 3, 7, 90)])
def test_parity_with_pytorch_at_odd_sizes(exported, shape):
    model, onnx_model = exported
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.no_grad():
        ref = model(x)
    out = onnx_model(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4


def test_metadata_describes_the_model(exported):
    _, onnx_model = exported
    meta = onnx_model.metadata
    assert meta["format"] == FORMAT and meta["name"] == "tiny" and meta["licence"] == "CC0"
    assert onnx_model.config == TINY and json.loads(meta["config"])["n_feats"] == TINY.n_feats
    assert {"input", "min_size", "tiling", "training", "precision"} <= set(meta)


def test_pipeline_keeps_depth_and_alpha_and_tiles_what_would_not_fit(exported, monkeypatch):
    model, onnx_model = exported
    monkeypatch.setattr("airnet_restore.export.available_ram", lambda: 16 * 2**20)  # 36x70 does not fit, 35x35 does
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 65536, size=(36, 70, 4), dtype=np.uint16)
    ref = restore(rgba, model, tile=35, tile_overlap=8)
    out = restore(rgba, onnx_model, tile=None, tile_overlap=8)  # split in halves by the tiler
    assert out.dtype == np.uint16 and out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert np.abs(out.astype(np.int64) - ref.astype(np.int64)).max() <= 8  # 1e-4 of 65535


@pytest.mark.slow  # about 14 s with its float64 export (CI runs -m slow)
@pytest.mark.parametrize("impl", ["numba", "torchvision"])
def test_float64_export_gives_the_uint8_output_of_pytorch_fp64(exported64, impl):
    """Odd sizes, 8 and 16 bits, a thin image (reflect-padded) and a tiled one: identical, not merely close."""
    model = make_tiny().set_dcn_impl(impl).eval()
    assert exported64.metadata["precision"].startswith("float64")
    rng = np.random.default_rng(17)
    cases = [((33, 47, 3), np.uint8, {}), ((7, 90, 3), np.uint8, {}), ((41, 29, 3), np.uint16, {}),
             ((90, 71, 3), np.uint8, {"tile": 48, "tile_overlap": 8})]
    for shape, dtype, options in cases:
        image = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
        ref = restore(image, model, precision="fp64", **options)
        out = restore(image, exported64, **options)
        assert out.dtype == dtype and np.array_equal(out, ref), (shape, dtype)
    x = torch.rand(2, 3, 35, 52, generator=torch.Generator().manual_seed(5))
    ref, out = restore_tensor(model, x, precision="fp64", tile=None), restore_tensor(exported64, x, tile=None)
    assert (out - ref).abs().max() <= 1e-7  # float32 outputs of float64 computations: at most 1 ulp apart


@pytest.mark.slow  # needs the float64 export above (CI runs -m slow)
def test_fp64_is_refused_for_the_onnxruntime_backend(exported64):
    with pytest.raises(AirNetError, match="export with --double"):
        restore_tensor(exported64, torch.rand(3, 40, 40), precision="fp64")


@pytest.mark.slow  # about 9 s: exports and runs a float16 model (CI runs -m slow)
def test_half_export_runs_in_onnxruntime(tmp_path):
    model = make_tiny().set_dcn_impl("torchvision").eval()
    path = export_onnx(model, tmp_path / "half.onnx", precision="fp16", metadata=descriptor("tiny", TINY, {}, "fp16"))
    x = torch.rand(1, 3, 35, 41, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    assert (OnnxRestorer(path)(x) - ref).abs().max().item() <= 5e-3


def test_missing_onnxruntime_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(AirNetError, match=r"needs the onnxruntime package: pip install 'airnet-restore\[onnx\]'"):
        OnnxRestorer(tmp_path / "x.onnx")


def test_unreadable_or_foreign_onnx_files_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AirNetError, match="cannot load it"):
        OnnxRestorer(bad)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])), foreign)
    with pytest.raises(AirNetError, match="not an airnet export"):
        OnnxRestorer(foreign)


def test_cli_refuses_mismatched_backend_and_weights(tmp_path, capsys):
    assert main(["restore", "--sample", "-o", str(tmp_path / "o"), "--weights", "m.onnx"]) == 2
    assert "add --backend onnxruntime" in capsys.readouterr().err
    assert main(["restore", "--sample", "-o", str(tmp_path / "o"), "--backend", "onnxruntime"]) == 2
    assert "needs --weights MODEL.onnx" in capsys.readouterr().err
    args = ["restore", "--sample", "-o", str(tmp_path / "o"), "--backend", "onnxruntime", "--weights", "m.onnx"]
    assert main([*args, "--precision", "fp16"]) == 2
    assert "drop --device, --precision and --dcn" in capsys.readouterr().err


@pytest.mark.slow
def test_sample_through_onnxruntime_in_float64_is_identical_to_pytorch(tmp_path):
    """The issue's check with the default weights: `airnet restore --sample --postfilter none` (the network),
    PyTorch vs onnxruntime, in float64. (With the post-filter both run it in float32 after the network.)"""
    model = tmp_path / "default64.onnx"
    assert main(["export", "--double", str(model)]) == 0
    one = ["--postfilter", "none", "--tile", "none"]  # onnxruntime's own memory figure would tile it: compare whole images
    assert main(["restore", "--sample", "-q", "-o", str(tmp_path / "torch"), "--precision", "fp64", *one]) == 0
    assert main(["restore", "--sample", "-q", "-o", str(tmp_path / "ort"), "--backend", "onnxruntime", "--weights", str(model),
                 *one]) == 0
    ref, out = (np.asarray(Image.open(tmp_path / d / "sample_noisy.png")) for d in ("torch", "ort"))
    assert out.dtype == np.uint8 and out.shape == (300, 400, 3) and np.array_equal(out, ref)


@pytest.mark.slow
def test_sample_through_onnxruntime_in_float32_is_within_one_level(tmp_path):
    """The default float32 paths (the post-filter included) round differently: a few values in 100,000 land on the
    neighbouring level."""
    model = tmp_path / "default.onnx"
    assert main(["export", str(model)]) == 0
    assert main(["restore", "--sample", "-q", "-o", str(tmp_path / "torch"), "--tile", "none"]) == 0
    assert main(["restore", "--sample", "-q", "-o", str(tmp_path / "ort"), "--backend", "onnxruntime", "--weights", str(model),
                 "--tile", "none"]) == 0
    ref, out = (np.asarray(Image.open(tmp_path / d / "sample_noisy.png")).astype(int) for d in ("torch", "ort"))
    assert np.abs(out - ref).max() <= 1 and np.count_nonzero(out != ref) <= 1e-4 * ref.size


def test_an_unwritable_or_wrong_target_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import airnet_restore.export as export

    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    before = weights.read_bytes()
    monkeypatch.setattr(export, "load_model", lambda *a, **k: pytest.fail("the weights loaded before the target was checked"))
    (tmp_path / "dir.onnx").mkdir()
    for target, message in [
        ("/proc/airnet-test/x.onnx", "/proc/airnet-test/x.onnx: cannot write there: No such file or directory"),
        (str(weights), f"{weights}: the output must be a .onnx file (the weights to export go in --weights)"),
        (str(tmp_path / "dir.onnx"), f"{tmp_path / 'dir.onnx'} is a folder; give the .onnx file to write"),
        (str(weights / "x.onnx"), f"{weights / 'x.onnx'}: {weights} is not a folder"),
    ]:
        assert main(["export", target, "--weights", str(weights)]) == 2
        assert capsys.readouterr().err == f"airnet export: error: {message}\n"
    assert weights.read_bytes() == before
    assert export.check_onnx_target(tmp_path / "new" / "deeper" / "m.onnx") == tmp_path / "new" / "deeper" / "m.onnx"
    assert not (tmp_path / "new").exists()  # checked, not created


@pytest.mark.slow  # about 9 s: exports up to the write (CI runs -m slow)
def test_a_failed_write_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    import errno

    import airnet_restore.export as export

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "atomic_write", full)
    with pytest.raises(AirNetError, match=r"m\.onnx: cannot write the ONNX model: No space left on device"):
        export_onnx(make_tiny(), tmp_path / "m.onnx", metadata=descriptor("tiny", TINY, {}, "fp32"))
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # about 30 s: exports and runs the default weights
def test_the_onnxruntime_backend_restores_with_the_post_filter_and_detectors(tmp_path):
    """The default weights exported: onnxruntime runs the network, the same post-filter and detectors run in PyTorch
    (issue 32), so both backends' defaults agree within 2 levels on a noisy photo and on a clean one."""
    from skimage import data

    from airnet_restore.constants import DEFAULT_VARIANT
    from airnet_restore.export import export_weights, load_onnx
    from airnet_restore.inference.pipeline import restore_image
    from airnet_restore.loading import load_model

    torch_model = load_model(DEFAULT_VARIANT, device="cpu")
    onnx_model = load_onnx(export_weights(DEFAULT_VARIANT, tmp_path / "default.onnx"), threads=2)
    assert onnx_model.detects and onnx_model.postfilter == torch_model.postfilter
    clean = np.ascontiguousarray(data.astronaut()[100:196, 180:276])
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    for image in (noisy, clean):
        ours, theirs = (restore_image(m, image, tile=None) for m in (torch_model, onnx_model))
        assert ours.found is not None and theirs.found is not None and ours.found.type == theirs.found.type
        assert np.abs(ours.pixels.astype(int) - theirs.pixels).max() <= 2
    network = restore(noisy, onnx_model, postfilter="none", tile=None)
    assert np.abs(network.astype(int) - restore(noisy, onnx_model, tile=None)).max() > 2  # the stage ran


def test_an_export_without_detectors_restores_fully_with_a_warning(exported, tmp_path):
    from airnet_restore.export import load_onnx

    with pytest.warns(UserWarning, match="carries no detectors"):
        plain = load_onnx(exported[1].path)
    assert not plain.detects and plain.inspect(np.zeros((64, 64, 3), np.uint8)) is None


def test_onnxruntime_tiles_stay_within_its_own_ceiling(exported, monkeypatch):
    """onnxruntime takes about 4x PyTorch's memory per pixel: its tiles are sized under its own ceiling
    (ORT_FORWARD_BYTES, half the PyTorch path's) by its own figure, however much memory is free (issue 35)."""
    from airnet_restore.constants import CPU_FORWARD_BYTES
    from airnet_restore.export import ORT_FORWARD_BYTES, ort_bytes_per_pixel
    from airnet_restore.inference.tiling import auto_tile_size
    from airnet_restore.loading import as_descriptor

    model, onnx_model = exported
    monkeypatch.setattr("airnet_restore.inference.tiling.available_ram", lambda: 64 * 2**30)
    cpu = torch.device("cpu")
    per_pixel = ort_bytes_per_pixel(TINY, "fp32")
    ort, torch_desc = as_descriptor(onnx_model), as_descriptor(model)
    assert ort.bytes_per_pixel(cpu) == per_pixel and ort.forward_bytes == ORT_FORWARD_BYTES < CPU_FORWARD_BYTES
    assert torch_desc.forward_bytes == CPU_FORWARD_BYTES
    tile = auto_tile_size(4000, 4000, per_pixel, cpu, ceiling=ort.forward_bytes)
    assert tile is not None and tile[0] == tile[1]
    assert tile[0] ** 2 * per_pixel <= ORT_FORWARD_BYTES < (tile[0] + 16) ** 2 * per_pixel  # as large as it allows
    torch_tile = auto_tile_size(4000, 4000, torch_desc.bytes_per_pixel(cpu), cpu, ceiling=torch_desc.forward_bytes)
    assert torch_tile is not None and torch_tile[0] > tile[0]


def test_onnxruntime_sessions_give_their_memory_back_after_each_run(exported):
    """No memory pattern (it doubled the peak from the second tile on) and the arena shrunk after each run, so the
    PyTorch post-filter reuses what the tiles took; the output stays the same run after run."""
    _, onnx_model = exported
    assert onnx_model.session.get_session_options().enable_mem_pattern is False
    assert onnx_model.session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
    assert onnx_model.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    first = onnx_model(x)
    torch.testing.assert_close(onnx_model(x), first, rtol=0, atol=0)


@pytest.mark.slow  # about 1-2 min: exports the default weights and restores a 1000x1000 photo in a new process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak resident set from /proc")
def test_a_megapixel_through_onnxruntime_peaks_within_2_gb(tmp_path):
    """Issue 35: `airnet restore` of a noisy 1 MP photo with the onnxruntime backend (detectors, tiles, post-filter)
    peaks within 2 GB of resident memory (4.0-4.3 GB with onnxruntime's memory pattern and the shared 2 GiB ceiling)."""
    from skimage import data

    from airnet_restore.constants import DEFAULT_VARIANT
    from airnet_restore.export import export_weights

    onnx_path = export_weights(DEFAULT_VARIANT, tmp_path / "default.onnx")
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((1000, 1000), Image.BICUBIC), dtype=np.float64)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 25, photo.shape), 0, 255).round().astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "mp1.png")
    code = ("import sys\nfrom airnet_restore.cli import main\nrc = main(sys.argv[1:])\n"
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')), rc)")
    run = subprocess.run([sys.executable, "-c", code, "restore", str(tmp_path / "mp1.png"), "-o", str(tmp_path / "out"),
                          "-q", "--backend", "onnxruntime", "--weights", str(onnx_path)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    peak_kib, rc = run.stdout.split()[-2:]
    assert rc == "0" and (tmp_path / "out" / "mp1.png").is_file()
    assert int(peak_kib) * 1024 <= 2.0e9, f"peak RSS {int(peak_kib) * 1024 / 1e9:.2f} GB"
