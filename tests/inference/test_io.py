import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from airnet_restore.errors import AirNetError
from airnet_restore.image_io import (
    ImageData,
    check_jpeg_quality,
    depth_warning,
    encode_png_grey_alpha_16,
    from_float,
    output_dtype,
    read_image,
    split_channels,
    to_float,
    write_image,
)


def test_rounding_not_truncation():
    assert from_float(np.array([0.5 / 255 + 1e-4]), np.uint8)[0] == 1
    assert from_float(np.array([254.4 / 255]), np.uint8)[0] == 254
    assert from_float(np.array([1.2, -0.1]), np.uint16).tolist() == [65535, 0]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_files_round_trip_exactly(tmp_path, suffix, channels):
    import cv2

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, size=(13, 17, channels) if channels > 1 else (13, 17), dtype=np.uint16)
    src = tmp_path / f"in{suffix}"
    bgr = pixels if channels == 1 else cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if channels == 4 else cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(src), bgr)
    data = read_image(src)
    assert data.dtype == np.uint16 and data.grey == (channels == 1)
    dst = write_image(tmp_path / f"out{suffix}", data, data.rgb)
    back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    if channels > 1:
        back = cv2.cvtColor(back, cv2.COLOR_BGRA2RGBA if channels == 4 else cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, pixels)


def test_exif_orientation_is_applied_and_reset(tmp_path):
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :5] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCam"
    src = tmp_path / "rot.png"
    Image.fromarray(pixels).save(src, exif=exif)
    data = read_image(src)
    assert data.rgb.shape == (30, 10, 3)
    assert data.rgb[:5].mean() == 1.0 and data.rgb[5:].max() == 0.0  # the band is now on top
    out = write_image(tmp_path / "out.png", data, data.rgb)
    with Image.open(out) as im:
        assert im.size == (10, 30)
        assert im.getexif()[0x0112] == 1 and im.getexif()[0x010F] == "TestCam"


def test_icc_profile_is_preserved(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(src, icc_profile=icc)
    data = read_image(src)
    for suffix in (".png", ".jpg", ".tif"):
        with Image.open(write_image(tmp_path / f"out{suffix}", data, data.rgb)) as im:
            assert im.info.get("icc_profile") == icc, suffix


def test_grey_and_alpha_split_and_join():
    rgba = np.dstack([np.full((4, 5, 3), 7, np.uint8), np.arange(20, dtype=np.uint8).reshape(4, 5)])
    colour, grey, alpha = split_channels(rgba)
    assert colour.shape == (4, 5, 3) and not grey and alpha.tolist() == rgba[:, :, 3].tolist()
    colour, grey, alpha = split_channels(np.zeros((4, 5), np.uint8))
    assert colour.shape == (4, 5, 3) and grey and alpha is None


def bad_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    raw = good.read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.png").write_text("hello, I am not an image")
    corrupt = bytearray(raw)
    corrupt[60:200] = b"\x00" * 140
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(tmp_path / "int32.tif")
    return {
        "empty.png": "empty file",
        "truncated.png": "corrupt or truncated",
        "text.png": "not an image",
        "corrupt.png": "corrupt or truncated",
        "int32.tif": "unsupported pixel type",
        "missing.png": "file not found",
    }


def test_every_bad_file_gives_a_one_line_reason(tmp_path):
    for name, reason in bad_files(tmp_path).items():
        with pytest.raises(AirNetError, match=reason) as e:
            read_image(tmp_path / name)
        assert "\n" not in str(e.value), name


def test_pixel_limit(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    with pytest.raises(AirNetError, match="over the limit of 1,000"):
        read_image(tmp_path / "big.png", max_pixels=1000)


def png_header(path):
    """(bit depth, colour type) from a PNG's IHDR."""
    head = Path(path).read_bytes()[:26]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24], head[25]


@pytest.mark.parametrize("source", ["uint16", "float32"])
def test_16_bit_and_float_grey_alpha_is_written_as_16_bit_grey_alpha_png(tmp_path, source):
    import cv2

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    alpha[0, :3] = [0, 1, 65535]
    pixels = np.repeat(grey[:, :, None], 3, axis=2)
    if source == "float32":
        pixels, alpha = pixels.astype(np.float32) / 65535, alpha.astype(np.float32) / 65535
    image = ImageData(pixels, np.dtype(source), grey=True, alpha=alpha)
    out = write_image(tmp_path / "la.png", image, pixels)
    assert png_header(out) == (16, 4)  # 16 bits, grey + alpha
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)  # libpng decodes it (as BGRA with equal colours)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[:, :, 0], grey)
    np.testing.assert_array_equal(back[:, :, 3], alpha if source == "uint16" else np.rint(alpha * 65535))
    again = read_image(out)
    assert again.grey and again.dtype == np.uint16
    np.testing.assert_array_equal(again.pixels[:, :, 0], grey)


def test_png_grey_alpha_encoder_survives_a_strict_decoder():
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 65536, (1, 1, 2), dtype=np.uint16), rng.integers(0, 65536, (40, 3, 2), dtype=np.uint16)
    for la in pixels:
        with Image.open(io.BytesIO(encode_png_grey_alpha_16(la))) as im:
            im.load()  # Pillow checks every CRC and the zlib stream
            assert im.size == (la.shape[1], la.shape[0])


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16_bit_and_float_grey_alpha_tiff_is_refused_clearly(tmp_path, dtype):
    image = ImageData(np.zeros((4, 5, 3), dtype), np.dtype(dtype), grey=True, alpha=np.ones((4, 5), dtype))
    with pytest.raises(AirNetError, match=r"grey \+ alpha as TIFF .*use --ext png"):
        write_image(tmp_path / "la.tif", image, image.pixels)
    assert not list(tmp_path.iterdir())


def test_output_depth_and_depth_warnings():
    u8, u16, f32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)
    assert [output_dtype(u16, s) for s in (".png", ".TIF", ".jpg", ".webp", ".bmp")] == [u16, u16, u8, u8, u8]
    assert [output_dtype(f32, s) for s in (".tiff", ".png", ".jpeg")] == [f32, u16, u8]
    assert depth_warning(u16, ".JPG") == "16-bit input written as 8-bit .jpg; use --ext png or tif to keep 16-bit"
    assert depth_warning(f32, ".png") == "float input written as 16-bit .png; use --ext tif to keep float"
    assert depth_warning(u8, ".jpg") is depth_warning(u16, ".png") is depth_warning(f32, ".tif") is None


def test_jpeg_quality_is_used_and_validated(tmp_path):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = ImageData(pixels, np.dtype(np.uint8))
    sizes = {q: write_image(tmp_path / f"q{q}.jpg", image, pixels, jpeg_quality=q).stat().st_size for q in (20, 95)}
    assert sizes[20] < sizes[95] / 2
    for bad in (0, 101, -5, 50.5, True, "90"):
        with pytest.raises(AirNetError, match=f"JPEG quality must be a whole number from 1 to 100, got {bad!r}"):
            write_image(tmp_path / "bad.jpg", image, pixels, jpeg_quality=bad)
    assert check_jpeg_quality(1) == 1 and check_jpeg_quality(100) == 100
    assert not (tmp_path / "bad.jpg").exists()


def test_integer_pixels_are_written_as_they_are_and_floats_are_rounded(tmp_path):
    pixels = np.arange(3 * 4 * 3, dtype=np.uint16).reshape(3, 4, 3) * 1000
    image = ImageData(pixels, np.dtype(np.uint16))
    import cv2

    back = cv2.imread(str(write_image(tmp_path / "a.png", image, pixels)), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv2.cvtColor(back, cv2.COLOR_BGR2RGB), pixels)
    with Image.open(write_image(tmp_path / "a.bmp", image, pixels)) as im:  # uint16 to an 8-bit format: rescaled
        np.testing.assert_array_equal(np.asarray(im), from_float(to_float(pixels), np.uint8))


def test_a_tiff_opencv_would_read_with_less_depth_or_no_alpha_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    la = np.random.default_rng(12).integers(0, 65536, (6, 7, 2), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "la16.tif", la, photometric="minisblack", extrasamples=["unassalpha"])
    with pytest.raises(AirNetError, match="a TIFF of 2 channels x 16 bits that OpenCV reads as 1 x 8 bits, losing data; save it as PNG"):
        read_image(tmp_path / "la16.tif")
    rgb = np.random.default_rng(13).random((6, 7, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "rgbf.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "rgbf.tif").pixels, rgb)  # what OpenCV reads fully still passes


def zlib_level_class(path: Path) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 for levels 0-1, 1 for 2-5, 2 for 6 (the usual default), 3 above."""
    blob = path.read_bytes()
    return blob[blob.index(b"IDAT") + 5] >> 6


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 3), (np.uint16, 2)])
def test_png_outputs_use_the_projects_compression_level(tmp_path, dtype, channels):
    """PNG_COMPRESS_LEVEL (4: twice as fast as 6 for a file 2-5 % larger) reaches every PNG encoder: Pillow's for
    8 bits, OpenCV's for 16, ours for 16-bit grey + alpha."""
    from airnet_restore.constants import PNG_COMPRESS_LEVEL

    rng = np.random.default_rng(7)
    top = 255 if dtype == np.uint8 else 65535
    rgb = np.repeat(rng.integers(0, top + 1, (40, 48, 1)), 3, axis=2).astype(dtype)
    alpha = rng.integers(0, top + 1, (40, 48)).astype(dtype) if channels == 2 else None
    out = write_image(tmp_path / "o.png", ImageData(rgb, np.dtype(dtype), grey=channels == 2, alpha=alpha), rgb)
    assert PNG_COMPRESS_LEVEL == 4 and zlib_level_class(out) == 1
    assert png_header(out)[0] == (8 if dtype == np.uint8 else 16)
