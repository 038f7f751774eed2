import numpy as np
import pytest
from PIL import Image

from airnet_restore.errors import AirNetError
from airnet_restore.image_io import from_float, read_image, split_channels, write_image


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
