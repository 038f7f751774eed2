"""Issue 34: sizes read from headers before any decode, no silent loss of depth, channels or range, and a
writer that drops what a format cannot hold instead of raising. Files come from the hostile suite's builders."""

import re
import struct
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from airnet_restore.errors import AirNetError, ImageTooLarge
from airnet_restore.image_io import ImageData, declared_size, metadata_warning, read_image, write_image
from tests.hostile.cases_images import (
    bmp_resized,
    gif_resized,
    jpeg_resized,
    png_resized,
    small_file,
    tiff_bytes,
    webp_resized,
)

RNG = np.random.default_rng(340)


def _huge(tmp_path, name):
    """A small file of format ``name`` whose header declares 5000 x 4000 pixels."""
    path = tmp_path / name
    fmt, resize = {"png": ("PNG", png_resized), "jpg": ("JPEG", jpeg_resized), "gif": ("GIF", gif_resized),
                   "bmp": ("BMP", bmp_resized), "webp": ("WEBP", webp_resized)}[name.split(".")[1]]
    path.write_bytes(resize(small_file(tmp_path / f"small.{name}", fmt, **({"lossless": True} if fmt == "WEBP" else {})), 5000, 4000))
    return path


@pytest.mark.parametrize("name", ["a.png", "a.jpg", "a.gif", "a.bmp", "a.webp"])
def test_declared_size_of_each_format_comes_from_its_header(tmp_path, name):
    assert declared_size(_huge(tmp_path, name)) == (5000, 4000)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_declared_size_of_a_tiff_pillow_may_not_open(tmp_path, order, big, dtype):
    path = tmp_path / "a.tif"
    path.write_bytes(tiff_bytes(np.zeros((3, 4, 3), dtype), declared=(12345, 6789), order=order, big=big))
    assert declared_size(path) == (12345, 6789)


def test_declared_size_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4)
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "noifd.tif").write_bytes(b"II*\x00\xff\xff\x00\x00")
    for name, reason in {"junk.png": "no IHDR", "text.jpg": "not an image", "noifd.tif": "no image directory"}.items():
        with pytest.raises(AirNetError, match=reason):
            declared_size(tmp_path / name)


@pytest.mark.parametrize("name", ["a.png", "a.jpg", "a.gif", "a.bmp", "a.webp", "float.tif", "big.tif"])
def test_over_size_is_refused_before_any_decoder_runs(tmp_path, monkeypatch, name):
    if name.endswith(".tif"):
        path = tmp_path / name
        path.write_bytes(tiff_bytes(np.zeros((4, 4, 3), np.float32 if name == "float.tif" else np.uint16), declared=(10000, 10000),
                                    big=name == "big.tif", compression=8))
    else:
        path = _huge(tmp_path, name)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"= [\d,]+ pixels is over the limit of 1,000,000 \(--max-pixels\)"):
        read_image(path, max_pixels=1_000_000)
    assert time.perf_counter() - start < 0.5


def test_a_size_over_pillows_bomb_limit_is_too_large_too(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(jpeg_resized(small_file(tmp_path / "s.jpg", "JPEG"), 65000, 65000))
    with pytest.raises(ImageTooLarge, match="decompression-bomb limit"):
        read_image(path, max_pixels=10**10)


def test_zero_sized_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(png_resized(small_file(tmp_path / "s.png", "PNG"), 8, 0))
    with pytest.raises(AirNetError, match=r"declares an empty image \(8x0\)"):
        read_image(path)


def test_16_bit_grey_png_opencv_cannot_decode_is_read_at_16_bits(tmp_path):
    grey = RNG.integers(0, 65536, (7, 9), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "whole.png"), grey)
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:-12])  # no IEND: OpenCV fails, Pillow reads it
    data = read_image(tmp_path / "cut.png")
    assert data.dtype == np.uint16 and data.grey
    np.testing.assert_array_equal(data.pixels[:, :, 0], grey)


def test_16_bit_rgb_that_only_pillow_decodes_is_refused_not_read_at_8_bits(tmp_path):
    path = tmp_path / "lzma.tif"
    path.write_bytes(tiff_bytes(RNG.integers(0, 65536, (7, 9, 3), dtype=np.uint16), compression=34925))
    message = "a TIFF of 3 channels x 16 bits that OpenCV cannot decode and Pillow reads as 3 x 8 bits, losing data; save it as PNG"
    with pytest.raises(AirNetError, match=re.escape(message)):
        read_image(path)


def test_float_pixels_out_of_range_are_refused_with_the_range(tmp_path):
    pixels = np.linspace(-1, 2, 5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3)
    (tmp_path / "f.tif").write_bytes(tiff_bytes(pixels))
    with pytest.raises(AirNetError, match=re.escape("float pixels range from -1 to 2; floats must be in [0, 1]")):
        read_image(tmp_path / "f.tif")


@pytest.mark.parametrize(("dtype", "reason"), [(np.float64, "64-bit float"), (np.float16, "16-bit float"),
                                               (np.int16, "16-bit signed"), (np.uint32, "32-bit unsigned")])
def test_tiff_depths_no_decoder_reads_exactly_are_refused_in_one_line(tmp_path, dtype, reason):
    (tmp_path / "a.tif").write_bytes(tiff_bytes(np.ones((5, 6, 3), dtype)))
    with pytest.raises(AirNetError, match=f"unsupported pixel type \\({reason} TIFF samples\\)") as e:
        read_image(tmp_path / "a.tif")
    assert "\n" not in str(e.value)


def test_transparent_grey_rgb_and_palette_pngs_keep_their_alpha(tmp_path):
    grey = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    grey[0, 0] = 9
    Image.fromarray(grey).save(tmp_path / "g.png", transparency=9)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "rgb.png", transparency=(9, 9, 9))
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png", transparency=int(np.asarray(Image.open(tmp_path / "g.png").convert("P"))[0, 0]))
    alpha = np.where(grey == 9, 0, 255)
    for name, grey_out in (("g.png", True), ("rgb.png", False), ("p.png", False)):
        data = read_image(tmp_path / name)
        assert data.grey == grey_out and data.alpha is not None, name
        np.testing.assert_array_equal(data.alpha, alpha, err_msg=name)


def test_tiff_orientation_is_applied_once_and_the_output_describes_its_pixels(tmp_path):
    rgb = RNG.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    (tmp_path / "r.tif").write_bytes(tiff_bytes(rgb, orientation=6))
    data = read_image(tmp_path / "r.tif")
    np.testing.assert_array_equal(data.pixels, np.swapaxes(rgb, 0, 1)[:, ::-1])
    with Image.open(write_image(tmp_path / "out.tif", data, data.pixels)) as im:
        assert im.size == (4, 7) and im.getexif().get(0x0112, 1) == 1
        np.testing.assert_array_equal(np.asarray(im), data.pixels)


def test_cmyk_is_refused(tmp_path):
    Image.new("CMYK", (4, 4)).save(tmp_path / "c.jpg")
    with pytest.raises(AirNetError, match="JPEG in CMYK colour is not supported; convert it to RGB"):
        read_image(tmp_path / "c.jpg")


def _long_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000
    return exif.tobytes()


def test_exif_too_long_for_jpeg_is_dropped_and_said(tmp_path):
    pixels = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    image = ImageData(pixels, np.dtype(np.uint8), exif=_long_exif())
    assert f"EXIF ({len(image.exif):,} bytes, over JPEG's 65,533)" == metadata_warning(image, ".JPG").removeprefix("not written to the .jpg output: ")
    with Image.open(write_image(tmp_path / "a.jpg", image, pixels)) as im:
        assert not im.getexif() and im.size == (7, 6)
    assert metadata_warning(image, ".png") is None
    with Image.open(write_image(tmp_path / "a.png", image, pixels)) as im:
        assert im.getexif()[0x010E] == "x" * 70_000


def test_metadata_warning_names_what_each_output_drops():
    icc, exif = b"i" * 100, Image.Exif().tobytes() + b"e"
    u8 = ImageData(np.zeros((2, 2, 3), np.uint8), np.dtype(np.uint8), icc_profile=icc, exif=exif)
    u16 = ImageData(np.zeros((2, 2, 3), np.uint16), np.dtype(np.uint16), icc_profile=icc)
    assert metadata_warning(u8, ".bmp") == "not written to the .bmp output: ICC profile and EXIF (a .bmp file cannot hold them)"
    assert metadata_warning(u16, ".png") == "not written to the .png output: ICC profile (the 16-bit .png writer cannot write them)"
    assert metadata_warning(u16, ".jpg") is metadata_warning(u8, ".webp") is None
    assert metadata_warning(ImageData(u8.pixels, u8.dtype), ".bmp") is None


@pytest.mark.parametrize("error", [ValueError("bad"), struct.error("unpack"), KeyError("x"), cv2.error("a\nb")])
def test_an_encoder_exception_is_a_one_line_error_and_leaves_no_file(tmp_path, monkeypatch, error):
    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(Image.Image, "save", fails)
    image = ImageData(np.zeros((3, 3, 3), np.uint8), np.dtype(np.uint8))
    with pytest.raises(AirNetError, match=r"a\.png: could not encode a 8-bit \.png image") as e:
        write_image(tmp_path / "a.png", image, image.pixels)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


def test_a_tiff_whose_tag_values_follow_its_directory_is_one_page(tmp_path):
    """The next-directory offset is read right after the entries, not where a tag value was fetched."""
    from tests.web.serving import float_tiff

    path = tmp_path / "f.tif"
    path.write_bytes(float_tiff(64, 48))
    assert declared_size(path) == (64, 48)
    data = read_image(path)
    assert data.pixels.shape == (48, 64, 3) and data.dtype == np.float32
