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
from PIL import Image, UnidentifiedImageError

from airnet_restore.atomic import atomic_write
from airnet_restore.constants import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, JPEG_QUALITY, PNG_COMPRESS_LEVEL
from airnet_restore.errors import AirNetError, ImageTooLarge

EXIF_ORIENTATION = 0x0112
# Formats that hold 8 bits per channel only; float is written as 16 bits except in TIFF.
EIGHT_BIT_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".webp")
FLOAT_SUFFIXES = (".tif", ".tiff")
# Formats Pillow writes an ICC profile and EXIF into (8-bit only: OpenCV, which writes 16-bit and float, writes neither).
METADATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
# A JPEG marker segment holds 65,533 bytes: all of the EXIF; an ICC profile is split over at most 255 of them.
JPEG_MARKER_BYTES = 65533
JPEG_ICC_BYTES_PER_MARKER = JPEG_MARKER_BYTES - 14  # less "ICC_PROFILE\0", its number and the count
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF, both byte orders
# What Pillow opens for us (JPEG includes its camera variant, MPO): the formats we write, and GIF; OpenCV decodes each.
READ_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
# TIFF tags read from the header: width, length, bits per sample, compression, photometric, orientation,
# samples per pixel, sample format.
TIFF_TAGS = (256, 257, 258, 259, 262, 274, 277, 339)
TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8: the types those tags use
# A TIFF's own layout tags, which Pillow returns among its EXIF: kept, they would describe the output's pixels wrongly
# (a rotated image's width, the source's compression), so they are not carried to the output.
TIFF_LAYOUT_TAGS = frozenset((254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 290, 291,
                              317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532))
TIFF_PHOTOMETRIC = {0: "grey", 1: "grey", 2: "RGB", 3: "palette", 6: "YCbCr"}  # read; every other colour space is refused
# Exceptions Pillow and OpenCV raise on files they cannot read or write, besides OSError.
CODEC_ERRORS = (SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError, OverflowError, struct.error, zlib.error,
                cv2.error)

Layout = tuple[int, np.dtype]  # (channels, dtype) of the pixels a file holds


@dataclass(frozen=True)
class _Tiff:
    """What a TIFF's first directory says, read without decoding: enough to check its size and depth."""

    tags: dict[int, tuple[int, ...]]
    more_pages: bool

    def tag(self, number: int, default: int) -> int:
        return self.tags.get(number, (default,))[0]


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (OpenCV's span several)."""
    return " ".join(str(error).split())[:300] or type(error).__name__


def _read_tiff_header(path: Path) -> _Tiff:
    """The first directory of a classic or Big TIFF, either byte order, reading only the tags in ``TIFF_TAGS``."""
    with open(path, "rb") as f:
        head = f.read(16)
        order = "<" if head[:2] == b"II" else ">"
        big = head[2:4] in (b"+\x00", b"\x00+")
        (offset,) = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])
        count_fmt, entry_size, inline = ("Q", 20, 8) if big else ("H", 12, 4)
        f.seek(offset)
        count_bytes = f.read(struct.calcsize(count_fmt))
        if len(count_bytes) < struct.calcsize(count_fmt):
            raise AirNetError(f"{path}: corrupt or truncated TIFF (no image directory)")
        (count,) = struct.unpack(order + count_fmt, count_bytes)
        entries = f.read(entry_size * min(count, 65535))
        after_entries = f.tell()  # the next directory's offset follows the entries
        tags: dict[int, tuple[int, ...]] = {}
        for i in range(0, len(entries) - entry_size + 1, entry_size):
            tag, kind, n = struct.unpack(order + ("HHQ" if big else "HHI"), entries[i:i + (12 if big else 8)])
            if tag not in TIFF_TAGS or kind not in TIFF_TYPES or not 1 <= n <= 16:
                continue
            fmt = f"{order}{n}{TIFF_TYPES[kind]}"
            value = entries[i + entry_size - inline:i + entry_size]
            if struct.calcsize(fmt) > inline:  # stored elsewhere: the field holds its offset
                (where,) = struct.unpack(order + ("Q" if big else "I"), value)
                f.seek(where)
                value = f.read(struct.calcsize(fmt))
            tags[tag] = struct.unpack(fmt, value[:struct.calcsize(fmt)])
        f.seek(after_entries)
        following = f.read(inline) if len(entries) == entry_size * count else b""
    if 256 not in tags or 257 not in tags:
        raise AirNetError(f"{path}: corrupt or truncated TIFF (its header gives no width or height)")
    return _Tiff(tags, len(following) == inline and any(following))


def _read_png_header(path: Path) -> tuple[int, int, int, int, bool]:
    """(width, height, bit depth, colour type, has a tRNS chunk) from a PNG's chunks before its pixels."""
    with open(path, "rb") as f:
        head = f.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise AirNetError(f"{path}: corrupt or truncated PNG (no IHDR header)")
        w, h, bits, colour = struct.unpack(">IIBB", head[16:26])
        while len(chunk := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", chunk)
            if kind in (b"tRNS", b"IDAT", b"IEND"):
                return w, h, bits, colour, kind == b"tRNS"
            f.seek(length + 4, os.SEEK_CUR)  # the body and its CRC
    return w, h, bits, colour, False


def declared_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as the file's header declares them, read without decoding any pixel.

    PNG and TIFF headers are read here (Pillow cannot open float TIFFs nor some compressions);
    JPEG, WebP, BMP and GIF by Pillow, which reads only the header when opening. A file whose size
    cannot be learnt this way is an ``AirNetError``; one over Pillow's decompression-bomb limit is
    ``ImageTooLarge``.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if head == PNG_SIGNATURE:
            return _read_png_header(path)[:2]
        if head[:4] in TIFF_SIGNATURES:
            tiff = _read_tiff_header(path)
            return tiff.tag(256, 0), tiff.tag(257, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller's limit decides
            with Image.open(path, formats=READ_FORMATS) as im:
                return im.size
    except AirNetError:
        raise
    except PermissionError:
        raise AirNetError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise AirNetError(f"{path}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError:
        assert Image.MAX_IMAGE_PIXELS is not None  # Pillow checks for bombs only while it has a limit
        raise ImageTooLarge(f"{path}: over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, *CODEC_ERRORS) as e:
        raise AirNetError(f"{path}: corrupt or truncated image ({_one_line(e)})") from None


def check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse an empty or over-size declared size before anything is decoded (``ImageTooLarge`` when over)."""
    if width <= 0 or height <= 0:
        raise AirNetError(f"{path}: the header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} (--max-pixels)")


def _bits(dtype: np.dtype) -> str:
    return f"{8 * dtype.itemsize}-bit float" if dtype.kind == "f" else f"{8 * dtype.itemsize} bits"


def _describe(layout: Layout) -> str:
    return f"{layout[0]} x {_bits(layout[1])}"


def _layout_of(pixels: np.ndarray) -> Layout:
    return (1 if pixels.ndim == 2 else pixels.shape[2]), pixels.dtype


def _png_layout(path: Path) -> Layout:
    """The channels and depth a PNG holds: a tRNS chunk is an alpha channel (grey, RGB and palette alike)."""
    _, _, bits, colour, trns = _read_png_header(path)
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    if channels is None or bits not in (1, 2, 4, 8, 16):
        raise AirNetError(f"{path}: corrupt PNG (colour type {colour}, {bits} bits)")
    if trns and colour == 0 and bits < 8:  # Pillow compares the transparent value unscaled, OpenCV ignores it
        raise AirNetError(f"{path}: a {bits}-bit grey PNG with a transparent value is not supported; save it as 8-bit grey + alpha")
    return channels + (trns and channels in (1, 3)), np.dtype(np.uint16 if bits == 16 else np.uint8)


def _tiff_layout(path: Path, tiff: _Tiff) -> Layout:
    """The channels and depth a TIFF holds; kinds no decoder here reads exactly (CMYK, Lab, 64-bit float, signed) are refused."""
    photometric = tiff.tag(262, 1 if tiff.tag(277, 1) < 3 else 2)
    if photometric not in TIFF_PHOTOMETRIC:
        raise AirNetError(f"{path}: TIFF colour space {photometric} (CMYK, Lab or other) is not supported; convert it to RGB")
    bits, kind = set(tiff.tags.get(258, (1,))), tiff.tag(339, 1)
    if len(bits) != 1 or kind not in (1, 3) or (kind == 3 and bits != {32}) or (kind == 1 and not bits <= {1, 2, 4, 8, 16}):
        sample = {1: "unsigned", 2: "signed", 3: "float"}.get(kind, f"format {kind}")
        raise AirNetError(f"{path}: unsupported pixel type ({'/'.join(map(str, sorted(bits)))}-bit {sample} TIFF samples); "
                          "expected 8- or 16-bit integers or 32-bit float")
    (depth,) = bits
    dtype = np.dtype(np.float32 if kind == 3 else np.uint16 if depth == 16 and photometric != 3 else np.uint8)
    channels = tiff.tag(277, 1) + (2 if photometric == 3 else 0)  # a palette gives RGB
    if not 1 <= channels <= 4:
        raise AirNetError(f"{path}: a TIFF of {channels} channels is not supported; expected grey, RGB or either with alpha")
    return channels, dtype


def _pillow_layout(path: Path, im: Image.Image) -> Layout:
    """The channels of an 8-bit format (JPEG, WebP, BMP, GIF) from Pillow's mode; a transparent colour is an alpha channel."""
    alpha = "transparency" in im.info
    channels = {"1": 1 + alpha, "L": 1 + alpha, "LA": 2, "P": 3 + alpha, "PA": 4, "RGB": 3 + alpha, "RGBA": 4}.get(im.mode)
    if channels is None:
        raise AirNetError(f"{path}: {im.format} in {im.mode} colour is not supported; convert it to RGB")
    return channels, np.dtype(np.uint8)


def _opencv_pixels(path: Path, layout: Layout) -> np.ndarray | None:
    """OpenCV's decoding in RGB order, grey + alpha from its BGRA; None where it fails."""
    try:
        decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if decoded is None:
        return None
    if layout[0] == 2 and decoded.ndim == 3 and decoded.shape[2] == 4:  # grey + alpha decoded as BGRA with equal colours
        colour = decoded[:, :, :3]
        if (colour == colour[:, :, :1]).all():
            return decoded[:, :, [0, 3]]
    return _rgb_order(decoded)


def _pillow_pixels(im: Image.Image, layout: Layout) -> np.ndarray:
    """Pillow's decoding at its own depth; palettes and transparent colours become RGB(A) or grey + alpha."""
    channels = layout[0]
    transparent = im.info.get("transparency")
    if im.mode in ("I;16", "I;16B", "I;16L") and channels == 2 and isinstance(transparent, int):
        grey = np.asarray(im).astype(np.uint16)  # 16-bit grey with a transparent value: Pillow's LA would be 8-bit
        return np.dstack([grey, np.where(grey == transparent, 0, 65535).astype(np.uint16)])
    if im.mode in ("1", "P", "PA") or (transparent is not None and im.mode in ("L", "RGB")):
        im = im.convert({1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(channels, "RGBA"))
    pixels = np.asarray(im)
    return pixels.astype(pixels.dtype.newbyteorder("=")) if pixels.dtype.byteorder == ">" else pixels


def _decode(path: Path, im: Image.Image | None, layout: Layout, fmt: str, pillow_exact: bool) -> np.ndarray:
    """The file's pixels with the channels and depth it holds: OpenCV's where they are, else Pillow's where
    they are (``pillow_exact``: Pillow decodes this file in place), else a refusal: never fewer bits or channels."""
    pixels = _opencv_pixels(path, layout)
    if pixels is not None and _layout_of(pixels) == layout:
        return pixels
    seen = f"OpenCV reads as {_describe(_layout_of(pixels))}" if pixels is not None else "OpenCV cannot decode"
    if im is not None and pillow_exact:
        from_pillow = _pillow_pixels(im, layout)
        if _layout_of(from_pillow) == layout:
            return from_pillow
        seen += f" and Pillow reads as {_describe(_layout_of(from_pillow))}"
    advice = "save it as PNG" if fmt == "TIFF" else "the file may be damaged: save it again"
    raise AirNetError(f"{path}: a {fmt} of {layout[0]} channels x {_bits(layout[1])} that {seen}, losing data; {advice}")


def _rgb_order(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) to RGB(A); grey is unchanged."""
    if pixels.ndim != 3:
        return pixels
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _check_float_range(path: Path, pixels: np.ndarray) -> None:
    """Float pixels outside [0, 1] would be clipped without a word: refused, saying the range found."""
    if pixels.dtype.kind == "f":
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 1.0:
            raise AirNetError(f"{path}: float pixels range from {low:g} to {high:g}; floats must be in [0, 1]: scale them first")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image file; any problem is an ``AirNetError`` with a one-line reason.

    The size the header declares is checked before anything is decoded (``ImageTooLarge``).
    The pixels keep the file's channels and depth or the file is refused: a decoder that would
    read fewer is not used. Animated and multi-page files are refused (only their first frame
    would be restored); float pixels must be finite and in [0, 1]; CMYK is refused.
    """
    path = Path(path)
    _check_regular_file(path)
    if path.stat().st_size == 0:
        raise AirNetError(f"{path}: empty file (0 bytes)")
    width, height = declared_size(path)
    check_size(path, width, height, max_pixels)
    with open(path, "rb") as f:
        head = f.read(8)
    tiff = _read_tiff_header(path) if head[:4] in TIFF_SIGNATURES else None
    layout = _tiff_layout(path, tiff) if tiff is not None else _png_layout(path) if head == PNG_SIGNATURE else None
    # TIFF decoders turn the pixels upright themselves (OpenCV always, Pillow not for every orientation)
    orientation, icc, exif = tiff.tag(274, 1) if tiff is not None else 1, None, None
    fmt = "TIFF" if tiff is not None else "PNG" if layout is not None else "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our max_pixels decides
            with Image.open(path, formats=READ_FORMATS) as im:
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise AirNetError(f"{path}: {frames} frames (animated or multi-page); only single images are restored: extract the frames first")
                im.load()  # decodes fully: catches truncated and corrupt files
                icc = im.info.get("icc_profile")
                exif_obj = im.getexif()
                if tiff is None:
                    orientation = int(exif_obj.get(EXIF_ORIENTATION, 1) or 1)
                for tag in TIFF_LAYOUT_TAGS.intersection(exif_obj) if tiff is not None else ():
                    del exif_obj[tag]
                if exif_obj:
                    exif_obj[EXIF_ORIENTATION] = 1  # pixels are written upright
                    exif = exif_obj.tobytes()
                if layout is None:
                    layout, fmt = _pillow_layout(path, im), str(im.format)
                pixels = _decode(path, im, layout, fmt, pillow_exact=orientation == 1 or tiff is None)
    except AirNetError:
        raise
    except PermissionError:
        raise AirNetError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        if tiff is None or layout is None:
            raise AirNetError(f"{path}: not an image (or an unsupported format)") from None
        if tiff.more_pages:
            raise AirNetError(f"{path}: a multi-page TIFF; only single images are restored: extract the pages first") from None
        pixels = None  # a TIFF Pillow cannot open (float RGB): OpenCV alone, no metadata
    except Image.DecompressionBombError:
        assert Image.MAX_IMAGE_PIXELS is not None  # Pillow checks for bombs only while it has a limit
        raise ImageTooLarge(f"{path}: over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, *CODEC_ERRORS) as e:
        raise AirNetError(f"{path}: corrupt or truncated image ({_one_line(e)})") from None
    if pixels is None:
        assert layout is not None
        pixels = _decode(path, None, layout, fmt, pillow_exact=False)
    upright = (width, height) if tiff is None or orientation < 5 else (height, width)
    if pixels.shape[1::-1] != upright:
        raise AirNetError(f"{path}: decoded as {pixels.shape[1]}x{pixels.shape[0]} but its header says {width}x{height}; the file may be damaged")
    check_pixels(pixels, str(path))
    _check_float_range(path, pixels)
    rgb, grey, alpha = split_channels(pixels if tiff is not None else _orient(pixels, orientation))
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


def _metadata(image: ImageData, suffix: str) -> tuple[bytes | None, bytes | None, list[str]]:
    """The ICC profile and EXIF a ``suffix`` file gets for ``image`` (None: dropped) and what is dropped and why."""
    suffix = suffix.lower()
    icc, exif, dropped = image.icc_profile or None, image.exif or None, []
    held = [name for name, value in (("ICC profile", icc), ("EXIF", exif)) if value]
    if held and suffix not in METADATA_SUFFIXES:
        return None, None, [f"{' and '.join(held)} (a {suffix} file cannot hold them)"]
    if held and output_dtype(image.dtype, suffix) != np.uint8:
        return None, None, [f"{' and '.join(held)} (the {DEPTH_NAMES[output_dtype(image.dtype, suffix)]} {suffix} writer cannot write them)"]
    if suffix in (".jpg", ".jpeg"):
        if exif and len(exif) > JPEG_MARKER_BYTES:
            exif = None
            dropped.append(f"EXIF ({len(image.exif or b''):,} bytes, over JPEG's {JPEG_MARKER_BYTES:,})")
        if icc and -(-len(icc) // JPEG_ICC_BYTES_PER_MARKER) > 255:
            icc = None
            dropped.append(f"ICC profile ({len(image.icc_profile or b''):,} bytes, over JPEG's {255 * JPEG_ICC_BYTES_PER_MARKER:,})")
    return icc, exif, dropped


def metadata_warning(image: ImageData, suffix: str) -> str | None:
    """A one-line warning naming the metadata a ``suffix`` file will not get from ``image`` (``write_image`` drops it), else None."""
    dropped = _metadata(image, suffix)[2]
    return f"not written to the {suffix.lower()} output: {'; '.join(dropped)}" if dropped else None


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
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)) + chunk(b"IEND", b"")


def write_image(path: str | os.PathLike, image: ImageData, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> Path:
    """Write restored ``rgb`` with the source's depth, grey/alpha, ICC and EXIF, atomically.

    ``rgb`` is HxWx3: float in [0, 1], or integers already at ``output_dtype`` (kept as they are).
    8-bit files go through Pillow (ICC and EXIF kept where the format allows); 16-bit and
    float through OpenCV (pixels exact, metadata dropped: OpenCV cannot write it), and 16-bit
    grey + alpha PNG through ``encode_png_grey_alpha_16``. ``jpeg_quality`` applies to JPEG.
    Metadata the file cannot hold is dropped, not an error (``metadata_warning`` says what);
    any failure is a one-line ``AirNetError``.
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

    icc, exif, _ = _metadata(image, suffix)

    def write(tmp: Path) -> None:
        if dtype == np.uint8:
            kwargs: dict[str, Any] = {"format": Image.registered_extensions()[suffix]}
            if icc:
                kwargs["icc_profile"] = icc
            if exif:
                kwargs["exif"] = exif
            if suffix in (".jpg", ".jpeg"):
                kwargs.update(quality=jpeg_quality, subsampling=0)
            if suffix == ".png":
                kwargs["compress_level"] = PNG_COMPRESS_LEVEL
            Image.fromarray(pixels).save(tmp, **kwargs)
        elif pixels.ndim == 3 and pixels.shape[2] == 2:
            tmp.write_bytes(encode_png_grey_alpha_16(pixels))
        else:
            bgr = pixels
            if pixels.ndim == 3:
                bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
            params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL] if suffix == ".png" else []
            ok, buf = cv2.imencode(suffix, bgr, params)
            if not ok:
                raise AirNetError(f"{path}: OpenCV could not encode a {dtype} {suffix} image")
            tmp.write_bytes(buf.tobytes())  # a full disk is an OSError with its errno (numpy's tofile loses it)

    try:
        return atomic_write(path, write)
    except OSError as e:
        raise AirNetError(f"{path}: cannot write: {e.strerror or _one_line(e)}") from None
    except CODEC_ERRORS as e:
        raise AirNetError(f"{path}: could not encode a {DEPTH_NAMES.get(dtype, dtype)} {suffix} image: {_one_line(e)}") from None
