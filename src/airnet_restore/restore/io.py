"""Image files in and out without losing anything: bit depth, grey, alpha, orientation, ICC, EXIF.

OpenCV decodes the pixels (it keeps 16 bits per channel, which Pillow drops for RGB);
Pillow verifies the file and reads the metadata. Inside the library an image is RGB float
in [0, 1]; this module is the only place that knows about files, BGR and integer depths.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from airnet_restore.errors import AirNetError
from airnet_restore.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 MP) as decompression bombs;
# our own limit sits just below, so one clear message covers both.
DEFAULT_MAX_PIXELS = 178_000_000
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
        raise AirNetError(f"unsupported image shape {pixels.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")
    c = pixels.shape[2]
    alpha = pixels[:, :, c - 1].copy() if c in (2, 4) else None
    colour = pixels[:, :, :1] if c in (1, 2) else pixels[:, :, :3]
    grey = colour.shape[2] == 1
    return (np.repeat(colour, 3, axis=2) if grey else colour), grey, alpha


def join_channels(rgb: np.ndarray, grey: bool, alpha: np.ndarray | None) -> np.ndarray:
    """The inverse of ``split_channels`` (grey output = mean of the three channels)."""
    colour = rgb.mean(axis=2, keepdims=True).astype(rgb.dtype) if grey else rgb
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


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image file; any problem is an ``AirNetError`` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise AirNetError(f"{path}: file not found")
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
                im.load()  # decodes fully: catches truncated and corrupt files
                icc = im.info.get("icc_profile")
                exif_obj = im.getexif()
                orientation = int(exif_obj.get(EXIF_ORIENTATION, 1) or 1)
                if exif_obj:
                    exif_obj[EXIF_ORIENTATION] = 1  # pixels are written upright
                    exif = exif_obj.tobytes()
                pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
                if pixels is None:  # formats OpenCV does not decode (GIF, ...): Pillow's 8-bit RGB(A)
                    pixels = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
                elif pixels.ndim == 3:
                    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    except AirNetError:
        raise
    except UnidentifiedImageError:
        raise AirNetError(f"{path}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError:
        raise AirNetError(f"{path}: over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise AirNetError(f"{path}: corrupt or truncated image ({e})") from None
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise AirNetError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit integers or 32-bit float")
    rgb, grey, alpha = split_channels(_orient(pixels, orientation))
    return ImageData(to_float(rgb), pixels.dtype, grey, alpha, icc, exif)


def write_image(path: str | os.PathLike, image: ImageData, rgb: np.ndarray) -> Path:
    """Write restored ``rgb`` (HxWx3 float) with the source's depth, grey/alpha, ICC and EXIF, atomically.

    8-bit files go through Pillow (ICC and EXIF kept where the format allows); 16-bit and
    float through OpenCV (pixels exact, metadata dropped: OpenCV cannot write it).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise AirNetError(f"{path}: cannot write {suffix or 'files without an extension'}; use one of {', '.join(IMAGE_SUFFIXES)}")
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
            ok, buf = cv2.imencode(suffix, bgr)
            if not ok:
                raise AirNetError(f"{path}: OpenCV could not encode a {dtype} {suffix} image")
            buf.tofile(tmp)

    return atomic_write(path, write)
