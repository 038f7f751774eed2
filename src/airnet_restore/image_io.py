"""Image files in and out without losing anything: bit depth, grey, alpha, orientation, ICC, EXIF.

OpenCV decodes the pixels (it keeps 16 bits per channel, which Pillow drops for RGB);
Pillow verifies the file and reads the metadata. Inside the library an image is RGB float
in [0, 1]; this module is the only place that knows about files, BGR and integer depths.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from airnet_restore.atomic import atomic_write
from airnet_restore.constants import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from airnet_restore.errors import AirNetError

EXIF_ORIENTATION = 0x0112


@dataclass
class ImageData:
    """Decoded pixels plus what is needed to write them back faithfully.

    ``rgb`` is HxWx3 float32 in [0, 1] (grey is replicated); ``alpha`` is the original
    alpha plane, untouched; ``dtype`` is the stored integer type (uint8 or uint16) or float32.
    """

    rgb: np.ndarray
    dtype: np.dtype
    grey: bool = False
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    extra: dict = field(default_factory=dict)


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
    """TIFFs Pillow cannot open (float32 RGB): pixels from OpenCV, no metadata."""
    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise AirNetError(f"{path}: not an image (or an unsupported format)")
    h, w = pixels.shape[:2]
    if w * h > max_pixels:
        raise AirNetError(f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} (--max-pixels)")
    return _rgb_order(pixels)


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
                    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
                    if pixels is None:  # formats OpenCV does not decode (GIF, ...): Pillow's 8-bit RGB(A)
                        pixels = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
                    elif pixels.ndim == 3 and pixels.shape[2] == 4 and _png_grey_alpha(path):
                        pixels = pixels[:, :, [0, 3]]  # 16-bit grey + alpha, which Pillow reads as RGBA
                    else:
                        pixels = _rgb_order(pixels)
    except AirNetError:
        raise
    except PermissionError:
        raise AirNetError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise AirNetError(f"{path}: not an image (or an unsupported format)") from None
        pixels = _decode_tiff_with_opencv(path, max_pixels)
    except Image.DecompressionBombError:
        raise AirNetError(f"{path}: over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise AirNetError(f"{path}: corrupt or truncated image ({e})") from None
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise AirNetError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit integers or 32-bit float")
    check_pixels(pixels, str(path))
    rgb, grey, alpha = split_channels(_orient(pixels, orientation))
    return ImageData(to_float(rgb), pixels.dtype, grey, alpha, icc, exif)


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output whose format cannot be written (GIF, AVIF, no extension)."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise AirNetError(f"{path}: cannot write {suffix or 'files without an extension'}; use one of {', '.join(IMAGE_SUFFIXES)} (--ext)")


def write_image(path: str | os.PathLike, image: ImageData, rgb: np.ndarray) -> Path:
    """Write restored ``rgb`` (HxWx3 float) with the source's depth, grey/alpha, ICC and EXIF, atomically.

    8-bit files go through Pillow (ICC and EXIF kept where the format allows); 16-bit and
    float through OpenCV (pixels exact, metadata dropped: OpenCV cannot write it). OpenCV
    cannot write grey + alpha either: 16-bit and float grey + alpha is written as RGBA whose
    three colour channels are equal.
    """
    path = Path(path)
    check_writable(path)
    suffix = path.suffix.lower()
    dtype = image.dtype
    if suffix in (".jpg", ".jpeg", ".bmp", ".webp") and dtype != np.uint8:
        dtype = np.dtype(np.uint8)  # these formats are 8-bit only
    if dtype == np.float32 and suffix not in (".tif", ".tiff"):
        dtype = np.dtype(np.uint16)
    alpha = image.alpha
    if alpha is not None and suffix in (".jpg", ".jpeg"):
        alpha = None  # JPEG has no alpha
    if alpha is not None and alpha.dtype != dtype:
        alpha = from_float(to_float(alpha), dtype)
    pixels = join_channels(from_float(rgb, dtype), image.grey, alpha)
    if pixels.ndim == 3 and pixels.shape[2] == 2 and (dtype != np.uint8 or suffix == ".bmp"):
        pixels = pixels[:, :, [0, 0, 0, 1]]  # grey + alpha as RGBA with equal colour channels

    def write(tmp: Path) -> None:
        if dtype == np.uint8:
            kwargs = {"format": Image.registered_extensions()[suffix]}
            if image.icc_profile and suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
                kwargs["icc_profile"] = image.icc_profile
            if image.exif and suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
                kwargs["exif"] = image.exif
            if suffix in (".jpg", ".jpeg"):
                kwargs.update(quality=95, subsampling=0)
            Image.fromarray(pixels).save(tmp, **kwargs)
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
