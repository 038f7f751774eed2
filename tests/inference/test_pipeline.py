import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.inference import restore, restore_files, restore_tensor
from airnet_restore.models import AirNet
from airnet_restore.weights import save_weights
from tests.conftest import TINY, make_tiny
from tests.inference.test_io import bad_files


class Identity(AirNet):
    """Returns its input: isolates the io path, so round trips must be exact."""

    def forward(self, x, x_key=None):
        return x.clone()


@pytest.fixture
def identity():
    return Identity(TINY).eval()


@pytest.fixture
def tiny():
    return make_tiny().eval()


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("shape", [(37, 53, 3), (21, 16), (19, 23, 4), (8, 9, 1)])
def test_numpy_in_numpy_out_keeps_shape_and_dtype(tiny, shape):
    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out = restore(img, tiny)
    assert out.shape == img.shape and out.dtype == np.uint8
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[:, :, 3], img[:, :, 3])


def test_identity_model_round_trips_uint16_and_float_exactly(identity):
    rng = np.random.default_rng(1)
    img16 = rng.integers(0, 65536, (11, 13, 3), dtype=np.uint16)
    np.testing.assert_array_equal(restore(img16, identity), img16)
    imgf = rng.random((11, 13, 3), dtype=np.float32)
    np.testing.assert_allclose(restore(imgf, identity), imgf, atol=1e-7)


def test_pil_and_tensor_kinds(tiny):
    pil = Image.fromarray(np.random.default_rng(2).integers(0, 255, (15, 22, 4), dtype=np.uint8), "RGBA")
    out = restore(pil, tiny)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == pil.size
    t = torch.rand(2, 3, 17, 19, dtype=torch.float64)
    out_t = restore(t, tiny)
    assert out_t.shape == t.shape and out_t.dtype == torch.float64
    with pytest.raises(AirNetError, match="cannot restore"):
        restore([1, 2, 3], tiny)
    with pytest.raises(AirNetError, match="unsupported PIL mode"):
        restore(Image.new("CMYK", (4, 4)), tiny)


def test_tiles_agree_with_whole_image(tiny):
    x = torch.rand(3, 90, 70, generator=torch.Generator().manual_seed(3))
    whole = restore_tensor(tiny, x, tile=None)
    tiled = restore_tensor(tiny, x, tile=48, tile_overlap=20)
    assert 10 * torch.log10(1 / ((whole - tiled) ** 2).mean()) > 50


def test_precision_options_run_and_reject_unknown(tiny):
    x = torch.rand(3, 20, 20)
    assert restore_tensor(tiny, x, precision="bf16").shape == x.shape
    with pytest.raises(AirNetError, match="precision"):
        restore_tensor(tiny, x, precision="fp8")


def make_tree(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (17, 15, 4), dtype=np.uint8), "RGBA").save(src / "sub" / "b.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(src / "sub" / "grey.jpg", quality=95)
    (src / ".DS_Store").write_bytes(b"\x00\x01")
    return src


def test_batch_mirrors_the_tree_keeps_formats_and_never_touches_inputs(tmp_path, identity):
    src = make_tree(tmp_path)
    before = {p: sha(p) for p in src.rglob("*") if p.is_file()}
    report = restore_files([src], tmp_path / "out", identity, suffix="_r", progress=False)
    assert not report.failed and len(report.done) == 3
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a_r.png", "sub/b_r.png", "sub/grey_r.jpg"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a_r.png")), np.asarray(Image.open(src / "a.png")))
    with Image.open(out / "sub" / "b_r.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(Image.open(src / "sub" / "b.png")))
    with Image.open(out / "sub" / "grey_r.jpg") as im:
        assert im.mode == "L"
    assert before == {p: sha(p) for p in src.rglob("*") if p.is_file()}


def test_bad_files_are_reported_and_the_rest_is_written(tmp_path, tiny):
    reasons = bad_files(tmp_path)
    Image.new("RGB", (100, 100)).save(tmp_path / "huge.png")
    reasons["huge.png"] = "over the limit of 5,000"
    inputs = [tmp_path / name for name in reasons] + [tmp_path / "good.png"]
    report = restore_files(inputs, tmp_path / "out", tiny, max_pixels=5000, progress=False)
    assert [d.name for _, d in report.done] == ["good.png"]
    failed = dict(report.failed)
    reasons["missing.png"] = "no such file"
    for name, reason in reasons.items():
        key = str(tmp_path / name)
        assert reason in failed.get(key, ""), (name, failed)


def test_refuses_to_overwrite_an_input_unless_asked(tmp_path, identity):
    src = make_tree(tmp_path)
    digest = sha(src / "a.png")
    report = restore_files([src / "a.png"], src, identity, progress=False)
    assert "would overwrite an input" in report.failed[0][1] and not report.done
    assert sha(src / "a.png") == digest
    report = restore_files([src / "a.png"], src, identity, overwrite=True, progress=False)
    assert len(report.done) == 1


def test_skip_existing_and_unknown_inputs(tmp_path, identity):
    src = make_tree(tmp_path)
    restore_files([src / "a.png"], tmp_path / "out", identity, progress=False)
    report = restore_files([src / "a.png", str(tmp_path / "nothing*.png")], tmp_path / "out", identity, skip_existing=True, progress=False)
    assert len(report.skipped) == 1 and report.failed[0][1] == "no such file, folder or matching glob"


def test_interrupted_write_leaves_no_partial_file(tmp_path, identity, monkeypatch):
    src = make_tree(tmp_path)

    def boom(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        restore_files([src / "a.png"], tmp_path / "out", identity, progress=False)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_cli_restores_a_folder_and_exits_non_zero_on_failures(tmp_path, capsys):
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    src = make_tree(tmp_path)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "--weights", str(weights), "--ext", "tif", "-q", "--tile", "32", "--tile-overlap", "8"])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 restored, 1 failed, 0 skipped" in captured.out
    assert "FAILED" in captured.err and "broken.png" in captured.err
    assert (tmp_path / "out" / "sub" / "b.tif").is_file()


def test_cli_without_weights_says_what_to_do(tmp_path, capsys):
    code = main(["restore", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", "airnet"])
    assert code == 2
    assert "ships without weights" in capsys.readouterr().err


def whole_buffer_tiling(model, image, tile, overlap):
    """The tiler before streaming: whole-image float accumulators, divided at the end (the oracle)."""
    from airnet_restore.inference.tiling import axis_weight, tile_starts

    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    _, _, h, w = x.shape
    out, weight = torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w)
    model.to(memory_format=torch.channels_last)
    for y0 in tile_starts(h, tile, overlap):
        for x0 in tile_starts(w, tile, overlap):
            th, tw = min(tile, h), min(tile, w)
            with torch.no_grad():
                result = model(x[:, :, y0 : y0 + th, x0 : x0 + tw].contiguous(memory_format=torch.channels_last))
            wy = torch.from_numpy(axis_weight(y0, th, h, overlap)).view(1, 1, th, 1)
            wx = torch.from_numpy(axis_weight(x0, tw, w, overlap)).view(1, 1, 1, tw)
            out[:, :, y0 : y0 + th, x0 : x0 + tw] += result * (wy * wx)
            weight[:, :, y0 : y0 + th, x0 : x0 + tw] += wy * wx
    return (out / weight).clamp(0, 1)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("tile,overlap", [(32, 8), (48, 20), (40, 12)])
def test_streamed_tiles_give_exactly_the_whole_buffer_result(tmp_path, tiny, tile, overlap):
    """Tiles converted one at a time and rows stored as they finish: the same bytes as before."""
    from airnet_restore.image_io import from_float

    img = np.random.default_rng(8).integers(0, 256, (83, 101, 3), dtype=np.uint8)
    expected = from_float(whole_buffer_tiling(tiny, img, tile, overlap), np.uint8)
    np.testing.assert_array_equal(restore(img, tiny, tile=tile, tile_overlap=overlap), expected)
    Image.fromarray(img).save(tmp_path / "in.png")
    report = restore_files([tmp_path / "in.png"], tmp_path / "out", tiny, tile=tile, tile_overlap=overlap, progress=False)
    np.testing.assert_array_equal(np.asarray(Image.open(report.done[0][1])), expected)
    tensor = restore_tensor(tiny, torch.from_numpy(img).permute(2, 0, 1) / 255, tile=tile, tile_overlap=overlap)
    np.testing.assert_array_equal(from_float(tensor.permute(1, 2, 0).numpy(), np.uint8), expected)


def test_a_file_is_never_converted_to_float_whole(tmp_path, tiny, monkeypatch):
    """Only tiles become float: the image stays at its depth (a 24-megapixel photo: 72 MB, not 288 MB)."""
    from airnet_restore.inference import pipeline

    sizes = []

    def spy(pixels):
        sizes.append(pixels.shape[0] * pixels.shape[1])
        return to_float(pixels)

    to_float = pipeline.to_float
    monkeypatch.setattr(pipeline, "to_float", spy)
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    report = restore_files([tmp_path / "a.png"], tmp_path / "out", tiny, tile=64, tile_overlap=16, progress=False)
    assert len(report.done) == 1 and sizes and max(sizes) <= 64 * 64


def test_globs_keep_the_tree_below_their_fixed_prefix(tmp_path, identity, monkeypatch):
    shots = tmp_path / "src" / "shots"
    for rel in ("day1/morning/z.png", "day2/z.png", "top.png", "day2/notes.txt"):
        (shots / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            Image.new("RGB", (8, 8), (10, 20, 30)).save(shots / rel)
        else:
            (shots / rel).write_text("not an image")
    report = restore_files([str(shots / "**" / "*.png")], tmp_path / "out", identity, progress=False)
    assert not report.failed
    written = sorted(str(d.relative_to(tmp_path / "out")) for _, d in report.done)
    assert written == ["day1/morning/z.png", "day2/z.png", "top.png"]
    monkeypatch.chdir(tmp_path / "src")
    for pattern, expected in [
        ("shots/*/z.png", ["day2/z.png"]),  # a wildcard folder is kept
        ("*/day*/*.png", ["shots/day2/z.png"]),  # no fixed prefix: relative to the working folder
        ("shots/day2/*.png", ["z.png"]),  # wildcards in the name only: just the names
    ]:
        out = tmp_path / pattern.replace("*", "_").replace("/", "-")
        report = restore_files([pattern], out, identity, progress=False)
        assert sorted(str(d.relative_to(out)) for _, d in report.done) == expected, pattern


def test_jpeg_quality_and_the_16_to_8_bit_warning(tmp_path, identity):
    import cv2

    rng = np.random.default_rng(10)
    cv2.imwrite(str(tmp_path / "deep.png"), rng.integers(0, 65536, (40, 40, 3), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "flat.png")
    inputs = [tmp_path / "deep.png", tmp_path / "flat.png"]
    low = restore_files(inputs, tmp_path / "q20", identity, ext="jpg", jpeg_quality=20, progress=False)
    high = restore_files(inputs, tmp_path / "q95", identity, ext="jpg", progress=False)
    assert len(low.done) == len(high.done) == 2
    for name in ("deep.jpg", "flat.jpg"):
        assert (tmp_path / "q20" / name).stat().st_size < (tmp_path / "q95" / name).stat().st_size
    assert low.warnings == [(tmp_path / "deep.png", "16-bit input written as 8-bit .jpg; use --ext png or tif to keep 16-bit")]
    assert not restore_files(inputs, tmp_path / "png", identity, ext="png", progress=False).warnings
    with pytest.raises(AirNetError, match="JPEG quality must be a whole number from 1 to 100, got 0"):
        restore_files(inputs, tmp_path / "bad", identity, ext="jpg", jpeg_quality=0, progress=False)
    assert not (tmp_path / "bad").exists()


def test_16_bit_grey_alpha_is_restored_into_a_16_bit_grey_alpha_png(tmp_path, identity):
    from airnet_restore.image_io import encode_png_grey_alpha_16

    la = np.random.default_rng(11).integers(0, 65536, (20, 24, 2), dtype=np.uint16)
    (tmp_path / "la16.png").write_bytes(encode_png_grey_alpha_16(la))
    report = restore_files([tmp_path / "la16.png"], tmp_path / "out", identity, progress=False)
    out = report.done[0][1].read_bytes()
    assert (out[24], out[25]) == (16, 4)  # IHDR: 16 bits, grey + alpha
    assert out == (tmp_path / "la16.png").read_bytes()  # the identity model gives the same pixels, byte for byte
    report = restore_files([tmp_path / "la16.png"], tmp_path / "tif", identity, ext="tif", progress=False)
    assert "grey + alpha as TIFF" in report.failed[0][1] and not (tmp_path / "tif").exists()


def test_metadata_a_format_cannot_hold_is_dropped_with_a_warning(tmp_path, identity):
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000  # over the 65,533 bytes a JPEG marker holds
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "a.png", exif=exif)
    report = restore_files([tmp_path / "a.png"], tmp_path / "o", identity, ext="jpg", progress=False)
    assert [d.name for _, d in report.done] == ["a.jpg"] and not report.failed
    assert [(src.name, "not written to the .jpg output" in w) for src, w in report.warnings] == [("a.png", True)]
