"""Image files in and out without losing anything: bit depth, grey, alpha, orientation, ICC, EXIF.

OpenCV decodes the pixels (it keeps 16 bits per channel, which Pillow drops for RGB);
Pillow verifies the file and reads the metadata. Pixels stay at the file's depth (a 24-megapixel
photo is 72 MB as uint8, 288 MB as float32) until the restorer converts them tile by tile to
RGB float in [0, 1]; this module is the only place that knows about files, BGR and integer depths.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from airnet_restore.atomic import atomic_write
from airnet_restore.constants import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, JPEG_QUALITY
from airnet_restore.errors import AirNetError

EXIF_ORIENTATION = 0x0112
# Formats that hold 8 bits per channel only; float is written as 16 bits except in TIFF.
EIGHT_BIT_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".webp")
FLOAT_SUFFIXES = (".tif", ".tiff")
DEPTH_NAMES = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit", np.dtype(np.float32): "float"}


@dataclass
class ImageData:
    """Decoded pixels plus what is needed to write them back faithfully.

    ``pixels`` is HxWx3 RGB at the file's depth (uint8, uint16 or float32; grey is replicated);
    ``alpha`` is the original alpha plane, untouched; ``dtype`` is the depth to write back.
    """

    pixels: np.ndarray
    dtype: np.dtype
    grey: bool = False
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rgb(self) -> np.ndarray:
        """The colour as a new HxWx3 float32 array in [0, 1]."""
        return to_float(self.pixels)


def _scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def check_pixels(pixels: np.ndarray, name: str = "image") -> None:
    """Refuse what would give a wrong output silently: an empty image, or NaN/Inf among float pixels."""
    if pixels.size == 0:
        raise AirNetError(f"{name}: empty image (shape {pixels.shape})")
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        bad = int(pixels.size - np.isfinite(pixels).sum())
        raise AirNetError(f"{name}: {bad:,} pixel values are NaN or infinite; replace them with finite values first")


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Integer or float pixels to float32 in [0, 1]."""
    if pixels.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise AirNetError(f"unsupported pixel type {pixels.dtype}; expected uint8, uint16 or float")
    return (pixels.astype(np.float32) / _scale(pixels.dtype)).clip(0.0, 1.0) if pixels.dtype.kind == "u" else pixels.astype(np.float32)


def from_float(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float pixels to ``dtype``, clipped and rounded (not truncated)."""
    if np.dtype(dtype).kind == "f":
        return pixels.astype(dtype)
    scale = _scale(np.dtype(dtype))
    return np.rint(np.clip(pixels, 0.0, 1.0) * scale).astype(dtype)


def split_channels(pixels: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
    """HxW, HxWx1, HxWx3 or HxWx4 (RGB order) -> (HxWx3 colour, was grey, alpha or None)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise AirNetError(f"unsupported image shape {pixels.shape}; expected HxW, HxWx1, HxWx2, HxWx3 or HxWx4")
    c = pixels.shape[2]
    alpha = pixels[:, :, c - 1].copy() if c in (2, 4) else None
    colour = pixels[:, :, :1] if c in (1, 2) else pixels[:, :, :3]
    grey = colour.shape[2] == 1
    return (np.repeat(colour, 3, axis=2) if grey else colour), grey, alpha


def join_channels(rgb: np.ndarray, grey: bool, alpha: np.ndarray | None) -> np.ndarray:
    """The inverse of ``split_channels`` (grey output = mean of the three channels)."""
    colour = rgb
    if grey:  # the mean in float64: exact for equal channels, rounded (not truncated) for integers
        mean = rgb.mean(axis=2, keepdims=True, dtype=np.float64)
        colour = (np.rint(mean) if rgb.dtype.kind in "ui" else mean).astype(rgb.dtype)
    if alpha is not None:
        colour = np.concatenate([colour, alpha[:, :, None].astype(colour.dtype)], axis=2)
    return colour[:, :, 0] if colour.shape[2] == 1 else colour


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the pixels are upright."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    return np.ascontiguousarray(ops[orientation](pixels)) if orientation in ops else pixels


def _check_regular_file(path: Path) -> None:
    """A missing file, a folder, a FIFO or a device is refused before anything opens it (a FIFO would block)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AirNetError(f"{path}: file not found") from None
    except PermissionError:
        raise AirNetError(f"{path}: permission denied") from None
    if stat.S_ISDIR(mode):
        raise AirNetError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise AirNetError(f"{path}: not a regular file (a FIFO, socket or device); give an image file")


def _png_grey_alpha(path: Path) -> bool:
    """True for a PNG whose IHDR says grey + alpha (colour type 4): OpenCV decodes it as 4 channels."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[25] == 4


def _decode_tiff_with_opencv(path: Path, max_pixels: int) -> np.ndarray:
    """TIFFs Pillow cannot open (float32 RGB): pixels from OpenCV, no metadata.

    One that OpenCV would decode with fewer channels or bits than it holds (16-bit grey + alpha
    comes out as 8-bit grey) is refused.
    """
    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise AirNetError(f"{path}: not an image (or an unsupported format)")
    h, w = pixels.shape[:2]
    if w * h > max_pixels:
        raise AirNetError(f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} (--max-pixels)")
    stored, decoded = _tiff_layout(path), (1 if pixels.ndim == 2 else pixels.shape[2], 8 * pixels.dtype.itemsize)
    if stored is not None and stored != decoded:
        raise AirNetError(f"{path}: a TIFF of {stored[0]} channels x {stored[1]} bits that OpenCV reads as "
                          f"{decoded[0]} x {decoded[1]} bits, losing data; save it as PNG")
    return _rgb_order(pixels)


def _tiff_layout(path: Path) -> tuple[int, int] | None:
    """(samples per pixel, bits per sample) of a TIFF's first image, or None where the header cannot be read."""
    try:
        with open(path, "rb") as f:
            ifd = TiffImagePlugin.ImageFileDirectory_v2(f.read(8))
            f.seek(ifd.next)
            ifd.load(f)
        bits = ifd.get(258, 1)
        return int(ifd.get(277, 1)), int(bits[0] if isinstance(bits, tuple) else bits)
    except (OSError, SyntaxError, ValueError, struct.error):
        return None


def _rgb_order(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) to RGB(A); grey is unchanged."""
    if pixels.ndim != 3:
        return pixels
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image file; any problem is an ``AirNetError`` with a one-line reason.

    Animated and multi-page files are refused (only their first frame would be restored);
    float pixels must be finite.
    """
    path = Path(path)
    _check_regular_file(path)
    if path.stat().st_size == 0:
        raise AirNetError(f"{path}: empty file (0 bytes)")
    orientation, icc, exif = 1, None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our max_pixels decides
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise AirNetError(f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} (--max-pixels)")
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise AirNetError(f"{path}: {frames} frames (animated or multi-page); only single images are restored: extract the frames first")
                im.load()  # decodes fully: catches truncated and corrupt files
                icc = im.info.get("icc_profile")
                exif_obj = im.getexif()
                orientation = int(exif_obj.get(EXIF_ORIENTATION, 1) or 1)
                if exif_obj:
                    exif_obj[EXIF_ORIENTATION] = 1  # pixels are written upright
                    exif = exif_obj.tobytes()
                if im.mode == "LA":  # 8-bit grey + alpha: OpenCV would expand it to RGBA or drop the alpha
                    pixels = np.asarray(im)
                else:
                    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
                    if decoded is None:  # formats OpenCV does not decode (GIF, ...): Pillow's 8-bit RGB(A)
                        pixels = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
                    elif decoded.ndim == 3 and decoded.shape[2] == 4 and _png_grey_alpha(path):
                        pixels = decoded[:, :, [0, 3]]  # 16-bit grey + alpha, which Pillow reads as RGBA
                    else:
                        pixels = _rgb_order(decoded)
    except AirNetError:
        raise
    except PermissionError:
        raise AirNetError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise AirNetError(f"{path}: not an image (or an unsupported format)") from None
        pixels = _decode_tiff_with_opencv(path, max_pixels)
    except Image.DecompressionBombError:
        assert Image.MAX_IMAGE_PIXELS is not None  # Pillow checks for bombs only while it has a limit
        raise AirNetError(f"{path}: over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise AirNetError(f"{path}: corrupt or truncated image ({e})") from None
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise AirNetError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit integers or 32-bit float")
    check_pixels(pixels, str(path))
    rgb, grey, alpha = split_channels(_orient(pixels, orientation))
    return ImageData(rgb, pixels.dtype, grey, alpha, icc, exif)


def check_writable(path: Path, image: ImageData | None = None) -> None:
    """Refuse, before any work, an output whose format cannot be written (GIF, AVIF, no extension),
    or cannot hold ``image``'s grey + alpha at its depth (16-bit or float TIFF)."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise AirNetError(f"{path}: cannot write {suffix or 'files without an extension'}; use one of {', '.join(IMAGE_SUFFIXES)} (--ext)")
    if image is not None and image.grey and image.alpha is not None and suffix in FLOAT_SUFFIXES and image.dtype != np.uint8:
        raise AirNetError(f"{path}: cannot write {DEPTH_NAMES[np.dtype(image.dtype)]} grey + alpha as TIFF (no writer here keeps it grey); use --ext png")


def check_jpeg_quality(quality: int) -> int:
    """``quality`` if it is a JPEG quality (1-100), else an ``AirNetError``."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise AirNetError(f"JPEG quality must be a whole number from 1 to 100, got {quality!r}")
    return quality


def output_dtype(dtype: np.dtype, suffix: str) -> np.dtype:
    """The depth a ``suffix`` file gets for pixels of ``dtype``: uint8 in 8-bit formats, float as uint16 outside TIFF."""
    suffix = suffix.lower()
    if suffix in EIGHT_BIT_SUFFIXES:
        return np.dtype(np.uint8)
    if np.dtype(dtype) == np.float32 and suffix not in FLOAT_SUFFIXES:
        return np.dtype(np.uint16)
    return np.dtype(dtype)


def depth_warning(dtype: np.dtype, suffix: str) -> str | None:
    """A one-line warning when a ``suffix`` file cannot keep the depth of ``dtype`` pixels, else None."""
    out = output_dtype(dtype, suffix)
    if out.itemsize >= np.dtype(dtype).itemsize:
        return None
    name = DEPTH_NAMES[np.dtype(dtype)]
    keep = "tif" if name == "float" else "png or tif"
    return f"{name} input written as {DEPTH_NAMES[out]} {suffix.lower()}; use --ext {keep} to keep {name}"


def encode_png_grey_alpha_16(pixels: np.ndarray) -> bytes:
    """HxWx2 uint16 grey + alpha as PNG bytes (colour type 4, 16 bits), which OpenCV and Pillow cannot write.

    Rows use the PNG "Up" filter (each byte minus the one above, modulo 256) and one zlib stream.
    """
    h, w, _ = pixels.shape
    raw = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(h, w * 4)
    up = np.diff(raw, axis=0, prepend=np.zeros((1, w * 4), np.uint8))
    rows = np.hstack([np.full((h, 1), 2, np.uint8), up])  # filter type 2 at the start of each row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)  # 16 bits, grey + alpha, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def write_image(path: str | os.PathLike, image: ImageData, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> Path:
    """Write restored ``rgb`` with the source's depth, grey/alpha, ICC and EXIF, atomically.

    ``rgb`` is HxWx3: float in [0, 1], or integers already at ``output_dtype`` (kept as they are).
    8-bit files go through Pillow (ICC and EXIF kept where the format allows); 16-bit and
    float through OpenCV (pixels exact, metadata dropped: OpenCV cannot write it), and 16-bit
    grey + alpha PNG through ``encode_png_grey_alpha_16``. ``jpeg_quality`` applies to JPEG.
    """
    path = Path(path)
    check_writable(path, image)
    check_jpeg_quality(jpeg_quality)
    suffix = path.suffix.lower()
    dtype = output_dtype(image.dtype, suffix)
    if rgb.dtype != dtype:
        rgb = from_float(rgb if rgb.dtype.kind == "f" else to_float(rgb), dtype)
    alpha = image.alpha
    if alpha is not None and suffix in (".jpg", ".jpeg"):
        alpha = None  # JPEG has no alpha
    if alpha is not None and alpha.dtype != dtype:
        alpha = from_float(to_float(alpha), dtype)
    pixels = join_channels(rgb, image.grey, alpha)
    if pixels.ndim == 3 and pixels.shape[2] == 2 and suffix == ".bmp":
        pixels = pixels[:, :, [0, 0, 0, 1]]  # BMP has no grey + alpha: RGBA with equal colour channels

    def write(tmp: Path) -> None:
        if dtype == np.uint8:
            kwargs: dict[str, Any] = {"format": Image.registered_extensions()[suffix]}
            if image.icc_profile and suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
                kwargs["icc_profile"] = image.icc_profile
            if image.exif and suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
                kwargs["exif"] = image.exif
            if suffix in (".jpg", ".jpeg"):
                kwargs.update(quality=jpeg_quality, subsampling=0)
            Image.fromarray(pixels).save(tmp, **kwargs)
        elif pixels.ndim == 3 and pixels.shape[2] == 2:
            tmp.write_bytes(encode_png_grey_alpha_16(pixels))
        else:
            bgr = pixels
            if pixels.ndim == 3:
                bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
            try:
                ok, buf = cv2.imencode(suffix, bgr)
            except cv2.error:
                ok = False
            if not ok:
                raise AirNetError(f"{path}: OpenCV could not encode a {dtype} {suffix} image")
            tmp.write_bytes(buf.tobytes())  # a full disk is an OSError with its errno (numpy's tofile loses it)

    try:
        return atomic_write(path, write)
    except OSError as e:
        raise AirNetError(f"{path}: cannot write: {e.strerror or e}") from None
