"""Hostile inputs (issue 13): every case ends in a correct output or a one-line ``AirNetError``, never a
traceback, a silent wrong output or a damaged input. Tiny models and images keep it fast."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from airnet_restore.atomic import atomic_write, remove_stale_parts
from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.image_io import read_image, write_image
from airnet_restore.inference import restore, restore_files, restore_tensor
from airnet_restore.models import AirNet
from airnet_restore.weights import build_model, save_weights
from tests.conftest import TINY, make_tiny

RNG = np.random.default_rng(13)


class Identity(AirNet):
    """Returns its input, and counts its calls: io round trips must be exact."""

    calls = 0

    def forward(self, x, x_key=None):
        Identity.calls += 1
        return x.clone()


@pytest.fixture
def identity():
    Identity.calls = 0
    return Identity(TINY).eval()


def noise(shape, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


def save(path, pixels, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


# ---- files that must be refused with a one-line reason --------------------------------------

def _apng(p):
    frames = [Image.fromarray(noise((8, 8, 3))) for _ in range(3)]
    frames[0].save(p, save_all=True, append_images=frames[1:])


def _multipage_tiff(p):
    frames = [Image.fromarray(noise((8, 8, 3))) for _ in range(2)]
    frames[0].save(p, save_all=True, append_images=frames[1:])


def _float_tiff(value):
    def make(p):
        f = RNG.random((8, 9, 3), dtype=np.float32)
        f[2, 3, 1] = value
        cv2.imwrite(str(p), f)
    return make


def _truncated(suffix):
    def make(p):
        tmp = p.with_name("whole" + suffix)
        save(tmp, noise((64, 64, 3)), **({"quality": 90} if suffix == ".jpg" else {}))
        raw = tmp.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    return make


def _corrupt(p):
    raw = bytearray(save(p.with_name("whole.png"), noise((32, 32, 3))).read_bytes())
    raw[60:200] = b"\x00" * 140
    p.write_bytes(bytes(raw))


REFUSED = {
    "empty.png": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated.png": (_truncated(".png"), "corrupt or truncated"),
    "truncated.jpg": (_truncated(".jpg"), "corrupt or truncated"),
    "corrupt.png": (_corrupt, "corrupt or truncated"),
    "text.png": (lambda p: p.write_text("hello"), "not an image"),
    "html.jpg": (lambda p: p.write_text("<html>404</html>"), "not an image"),
    "int32.tif": (lambda p: save(p, np.arange(64, dtype=np.int32).reshape(8, 8) * 1000), "unsupported pixel type"),
    "missing.png": (lambda p: None, "file not found"),
    "folder.png": (lambda p: p.mkdir(), "is a folder"),
    "fifo.png": (lambda p: os.mkfifo(p), "not a regular file"),
    "apng.png": (_apng, "3 frames (animated or multi-page)"),
    "pages.tif": (_multipage_tiff, "2 frames (animated or multi-page)"),
    "anim.gif": (_apng, "3 frames"),
    "anim.webp": (_apng, "3 frames"),
    "nan.tif": (_float_tiff(np.nan), "1 pixel values are NaN or infinite"),
    "inf.tif": (_float_tiff(np.inf), "1 pixel values are NaN or infinite"),
    "big.png": (lambda p: save(p, np.zeros((100, 100, 3), np.uint8)), "over the limit of 5,000"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_hostile_file_is_refused_in_one_line(tmp_path, name):
    make, reason = REFUSED[name]
    make(tmp_path / name)
    with pytest.raises(AirNetError, match=re.escape(reason)) as e:
        read_image(tmp_path / name, max_pixels=5000)
    assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value)


def test_permission_denied_is_said_as_such(tmp_path, monkeypatch):
    path = save(tmp_path / "locked.png", noise((8, 8, 3)))

    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(AirNetError, match=re.escape("locked.png: permission denied")):
        read_image(path)


# ---- files that must round-trip exactly through an identity model ---------------------------

def _written(name, pixels, **kwargs):
    def make(p):
        if name.endswith(".tif") and pixels.dtype != np.uint8:
            bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(p), bgr)
        else:
            save(p, pixels, **kwargs)
        return pixels
    return make


ROUND_TRIP = {
    "rgb.png": _written("rgb.png", noise((9, 11, 3))),
    "grey.png": _written("grey.png", noise((9, 11))),
    "grey_alpha.png": _written("grey_alpha.png", noise((9, 11, 2))),
    "grey_alpha.tif": _written("grey_alpha.tif", noise((9, 11, 2))),
    "grey_alpha.webp": _written("grey_alpha.webp", noise((9, 11, 2)), lossless=True),
    "rgba.png": _written("rgba.png", noise((9, 11, 4))),
    "grey16.png": _written("grey16.png", noise((9, 11), np.uint16)),
    "float_rgb.tif": _written("float_rgb.tif", RNG.random((9, 11, 3), dtype=np.float32)),
    "float_grey.tif": _written("float_grey.tif", RNG.random((9, 11), dtype=np.float32)),
    "one_pixel.png": _written("one_pixel.png", noise((1, 1, 3))),
    "row.png": _written("row.png", noise((1, 40, 3))),
    "column.png": _written("column.png", noise((40, 1, 3))),
    "png_named.jpg": _written("png_named.jpg", noise((9, 11, 3)), format="PNG"),
    "single.gif": _written("single.gif", noise((9, 11))),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_hostile_file_round_trips_with_its_channels_and_depth(tmp_path, identity, name):
    pixels = ROUND_TRIP[name](tmp_path / name)
    ext = "png" if name.endswith((".gif", ".jpg", ".webp")) else None  # GIF cannot be written; JPEG, WebP are lossy
    report = restore_files([tmp_path / name], tmp_path / "o", identity, ext=ext, progress=False)
    assert not report.failed, report.failed
    dst = report.done[0][1]
    if pixels.dtype == np.uint8 and not name.endswith((".webp", ".gif")):
        with Image.open(tmp_path / name) as src_im, Image.open(dst) as out_im:
            assert out_im.mode == src_im.mode  # grey stays grey, grey + alpha stays grey + alpha
    back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED) if pixels.dtype != np.uint8 else np.asarray(Image.open(dst))
    if back.ndim == 3 and pixels.dtype != np.uint8:
        back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB)
    if name.endswith(".webp"):  # WebP has no grey: grey + alpha is read as RGBA with equal channels
        back = back[:, :, [0, 3]]
    if name.endswith(".gif"):  # a palette file: read as RGB
        back = back[:, :, 0]
    np.testing.assert_array_equal(back, pixels)


def test_grey_alpha_stays_grey_alpha_through_a_real_model(tmp_path):
    src = save(tmp_path / "la.png", noise((20, 24, 2)))
    report = restore_files([src], tmp_path / "o", make_tiny().eval(), progress=False)
    with Image.open(report.done[0][1]) as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im)[:, :, 1], np.asarray(Image.open(src))[:, :, 1])


def test_16_bit_grey_alpha_stays_16_bit_grey_alpha(tmp_path, identity):
    """Neither OpenCV nor Pillow writes 16-bit grey + alpha: our own PNG encoder does; TIFF is refused before the model."""
    from airnet_restore.image_io import ImageData

    la = noise((6, 7, 2), np.uint16)
    grey = np.repeat(la[:, :, :1] / 65535.0, 3, axis=2)
    path = write_image(tmp_path / "la16.png", ImageData(grey.astype(np.float32), np.dtype(np.uint16), True, la[:, :, 1]), grey)
    head = path.read_bytes()
    assert (head[24], head[25]) == (16, 4)  # IHDR: 16 bits, grey + alpha
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back[:, :, 3], la[:, :, 1])
    np.testing.assert_array_equal(back[:, :, 0], la[:, :, 0])
    data = read_image(path)
    assert data.grey and data.dtype == np.uint16
    report = restore_files([path], tmp_path / "o", identity, ext="tiff", progress=False)
    assert "cannot write 16-bit grey + alpha as TIFF" in report.failed[0][1] and Identity.calls == 0


# ---- tiny images: padded to a working size ---------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 37, 3), (37, 1, 3), (2, 2), (1, 5, 4)])
def test_tiny_images_come_back_with_their_shape_and_dtype(shape):
    img = noise(shape)
    out = restore(img, make_tiny().eval(), tile=None)
    assert out.shape == img.shape and out.dtype == img.dtype


def test_a_thin_strip_restores_like_the_same_row_of_the_whole_image():
    """A 1xN row of a real photo, restored alone, must agree with that row of the whole image restored."""
    from airnet_restore.loading import load_model
    from airnet_restore.variants import sample_image

    model = load_model("airnet-lite", device="cpu")
    photo = np.asarray(Image.open(sample_image()).convert("RGB"))[100:164, 100:400]
    whole = restore(photo, model, tile=None).astype(np.float64)
    for strip in (np.s_[32:33, :], np.s_[:, 150:151]):
        alone = restore(np.ascontiguousarray(photo[strip]), model, tile=None).astype(np.float64)
        psnr = 10 * np.log10(255**2 / np.mean((alone - whole[strip]) ** 2))
        assert psnr > 24, psnr  # row: 6.8 dB unpadded, 27.0 dB padded; column: 29.6 dB padded
        assert abs(alone.mean() - whole[strip].mean()) < 6


# ---- NaN / Inf / empty arrays, tensors and weights -------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_and_tensors_are_refused(value):
    img = RNG.random((8, 8, 3), dtype=np.float32)
    img[1, 2, 0] = value
    with pytest.raises(AirNetError, match="NaN or infinite"):
        restore(img, make_tiny().eval())
    with pytest.raises(AirNetError, match="NaN or infinite"):
        restore(torch.from_numpy(img).permute(2, 0, 1), make_tiny().eval())


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (0, 0, 4)])
def test_empty_arrays_are_refused(shape):
    with pytest.raises(AirNetError, match="empty image"):
        restore(np.zeros(shape, np.uint8), make_tiny().eval())


@pytest.mark.parametrize("shape", [(3, 0, 5), (1, 3, 5, 0), (0, 3, 8, 8)])
def test_empty_tensors_are_refused(shape):
    with pytest.raises(AirNetError, match="empty image tensor"):
        restore_tensor(make_tiny().eval(), torch.zeros(shape))


def test_a_model_that_outputs_nan_never_writes_it(tmp_path):
    class Broken(AirNet):
        def forward(self, x, x_key=None):
            return x * float("nan")

    src = save(tmp_path / "a.png", noise((8, 8, 3)))
    report = restore_files([src], tmp_path / "o", Broken(TINY).eval(), progress=False)
    assert "NaN or infinite" in report.failed[0][1] and not (tmp_path / "o" / "a.png").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_non_finite_weights_are_refused_at_load(tmp_path, value, fmt):
    sd = OrderedDict((k, v.clone()) for k, v in make_tiny().state_dict().items())
    sd["R.head.0.weight"][0, 0, 0, 0] = value
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(AirNetError, match=re.escape("'R.head.0.weight' holds NaN or infinite values")):
        build_model(path)


# ---- batches: overwrite planning, aliases, obstacles, junk -----------------------------------

def sha(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_overwrite_replaces_only_an_inputs_own_file(tmp_path, identity):
    """Issue 13, 1: photo.jpg's output must never replace the other input photo.png."""
    src = tmp_path / "ow"
    src.mkdir()
    save(src / "photo.png", noise((16, 16, 3)))
    save(src / "photo.jpg", noise((16, 16, 3)), quality=90)
    png = np.asarray(Image.open(src / "photo.png"))
    report = restore_files([src], src, identity, ext="png", overwrite=True, progress=False)
    assert [d.name for _, d in report.done] == ["photo.png"]
    assert "is the input" in dict(report.failed)[str(src / "photo.jpg")]
    np.testing.assert_array_equal(np.asarray(Image.open(src / "photo.png")), png)  # identity: its own output


def test_two_inputs_with_one_output_are_both_refused_before_any_write(tmp_path, identity):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        save(tmp_path / sub / "x.png", noise((8, 8, 3)))
    files = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]  # files are written by their names
    report = restore_files(files, tmp_path / "o", identity, progress=False)
    assert not report.done and len(report.failed) == 2 and "written by 2 inputs" in report.failed[0][1]
    assert not (tmp_path / "o").exists() and Identity.calls == 0


def test_a_symlinked_output_folder_is_the_input_folder(tmp_path, identity):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", noise((8, 8, 3)))
    digest = sha(src / "a.png")
    (tmp_path / "alias").symlink_to(src, target_is_directory=True)
    report = restore_files([src / "a.png"], tmp_path / "alias", identity, progress=False)
    assert "would overwrite an input" in report.failed[0][1] and sha(src / "a.png") == digest


def _unshare_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(sys.platform != "linux" or not _unshare_ok(), reason="needs unshare -rm (mount namespaces)")


@needs_mounts
def test_a_bind_mounted_output_folder_is_caught_by_inode(tmp_path):
    """Issue 13, 2: a bind mount is no symlink, resolve() cannot see it; device + inode can."""
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    src, alias = tmp_path / "in", tmp_path / "mnt"
    src.mkdir()
    alias.mkdir()
    save(src / "a.png", noise((16, 16, 3)))
    digest = sha(src / "a.png")
    cmd = (f"mount --bind {src} {alias} && {sys.executable} -m airnet_restore restore {src / 'a.png'} "
           f"-o {alias} --weights {weights} -q")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "would overwrite an input" in result.stderr, result.stderr
    assert sha(src / "a.png") == digest


@needs_mounts
def test_a_full_disk_is_said_as_such_and_leaves_no_partial_file(tmp_path):
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    src, out = tmp_path / "in", tmp_path / "full"
    src.mkdir()
    out.mkdir()
    cv2.imwrite(str(src / "a16.png"), noise((96, 96, 3), np.uint16))
    save(src / "b.png", noise((8, 8, 3)))
    cmd = f"mount -t tmpfs -o size=16k tmpfs {out} && {sys.executable} -m airnet_restore restore {src} -o {out} --weights {weights} -q; ls -a {out}"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert "a16.png: cannot write: No space left on device" in result.stderr, result.stderr
    assert "1 restored, 1 failed" in result.stdout and ".part" not in result.stdout


def test_a_rerun_into_a_subfolder_of_the_input_never_restores_its_own_outputs(tmp_path, identity):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", noise((8, 8, 3)))
    report = restore_files([src], src / "restored", identity, progress=False)
    assert [d for _, d in report.done] == [src / "restored" / "a.png"] and not report.failed
    # the rerun: the earlier output is skipped as an input (and said so); replacing it needs --overwrite
    again = restore_files([src], src / "restored", identity, progress=False)
    assert not again.done and "--overwrite" in again.failed[0][1]
    assert [(p, "inside the output folder" in why) for p, why in again.skipped] == [(src / "restored" / "a.png", True)]
    forced = restore_files([src], src / "restored", identity, progress=False, overwrite=True)
    assert [d for _, d in forced.done] == [src / "restored" / "a.png"] and not forced.failed


def test_output_folder_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys):
    save(tmp_path / "a.png", noise((8, 8, 3)))
    (tmp_path / "out").write_text("a file")
    code = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "absent.safetensors")])
    assert code == 2 and "exists and is not a folder" in capsys.readouterr().err  # not "weights file not found"


def test_output_subfolder_that_is_a_file_fails_that_input_only(tmp_path, identity):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    save(src / "a.png", noise((8, 8, 3)))
    save(src / "sub" / "b.png", noise((8, 8, 3)))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "sub").write_text("a file")
    report = restore_files([src], tmp_path / "o", identity, progress=False)
    assert [d.name for _, d in report.done] == ["a.png"] and "is a file" in report.failed[0][1]


@pytest.mark.parametrize("name", ["anim.gif", "photo.avif", "noext"])
def test_unwritable_output_format_is_refused_before_the_model_runs(tmp_path, identity, name):
    (tmp_path / name).write_bytes(b"anything")
    report = restore_files([tmp_path / name], tmp_path / "o", identity, progress=False)
    assert "cannot write" in report.failed[0][1] and Identity.calls == 0


def test_hidden_junk_in_a_folder_is_skipped(tmp_path, identity):
    src = tmp_path / "in"
    (src / ".thumbnails").mkdir(parents=True)
    save(src / "a.png", noise((8, 8, 3)))
    (src / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    save(src / ".thumbnails" / "t.png", noise((8, 8, 3)))
    report = restore_files([src], tmp_path / "o", identity, progress=False)
    assert not report.failed and [d.name for _, d in report.done] == ["a.png"]


def test_a_fifo_in_a_batch_is_named_and_the_rest_goes_on(tmp_path, identity):
    os.mkfifo(tmp_path / "pipe.png")
    save(tmp_path / "a.png", noise((8, 8, 3)))
    report = restore_files([tmp_path / "pipe.png", tmp_path / "a.png"], tmp_path / "o", identity, progress=False)
    assert len(report.done) == 1 and "not a regular file" in dict(report.failed)[str(tmp_path / "pipe.png")]


def test_cli_batch_goes_on_and_reports_every_failure_at_the_end(tmp_path, capsys):
    weights = save_weights(make_tiny(), tmp_path / "tiny.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", noise((8, 8, 3)))
    _apng(src / "b.png")
    save(src / "c.png", noise((1, 9, 3)))
    code = main(["restore", str(src), "-o", str(tmp_path / "o"), "--weights", str(weights), "-q"])
    out, err = capsys.readouterr()
    assert code == 1 and "2 restored, 1 failed" in out and "b.png: 3 frames" in err and "Traceback" not in err


def test_stale_part_files_of_killed_runs_are_removed_and_no_other(tmp_path, identity):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".airnet-{dead.pid}-abcd1234.part"
    old_one = out / f".airnet-{os.getpid()}-k3j2h1g0.part"
    mine = out / f".airnet-{os.getpid()}-abcd1234.part"
    # a user's own files that an earlier naming (".<name>.<pid>-<random>.part") took for ours (issue 34)
    users = [".notes.20240101.part", ".bashrc.backup01.part", ".thesis.docx.12-draft_v2.part",
             f".clip.mp4.{dead.pid}-abcdefgh.part", ".notes.part", f".a.png.{dead.pid}-abcd1234.part"]
    for p in (stale, old_one, mine, *(out / u for u in users)):
        p.write_bytes(b"half")
    old = time.time() - 7200
    for p in (old_one, *(out / u for u in users)):
        os.utime(p, (old, old))
    save(tmp_path / "a.png", noise((8, 8, 3)))
    restore_files([tmp_path / "a.png"], out, identity, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([mine.name, *users, "a.png"])


def test_atomic_write_names_its_temporary_file_with_its_pid_and_a_fixed_length(tmp_path):
    seen = []
    name = "n" * 250 + ".png"  # the target's name is not in the temporary name: 255 bytes are never passed
    atomic_write(tmp_path / name, lambda p: seen.append(p.name) or p.write_text("x"))
    assert seen[0].startswith(f".airnet-{os.getpid()}-") and len(seen[0]) < 40 and remove_stale_parts(tmp_path) == []
