"""Hostile image files (issue 34): each is read at its own depth and channels, or refused in one line.

Every case writes one file, restores it with ``--strength 0`` (the output is then the input, exactly
for integer pixels) and checks the output against what the file holds, or the refusal. Files whose
header declares a huge size must be refused from the header, before any decoding: in well under a
second. The builders are shared with ``tests/inference/test_image_io_hostile.py``.
"""

from __future__ import annotations

import lzma
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.hostile.harness import Cases, Result, Scene, bad, cli, refused, tiny_weights

CASES = Cases("images")
RNG = np.random.default_rng(34)
# The limit every case passes with --max-pixels; the declared-huge files are far over it.
LIMIT = 1_000_000


# ---- builders --------------------------------------------------------------------------------

def tiff_bytes(pixels: np.ndarray, *, declared: tuple[int, int] | None = None, compression: int = 1, order: str = "<",
               big: bool = False, photometric: int | None = None, orientation: int = 1, pages: int = 1) -> bytes:
    """A minimal one-strip TIFF of ``pixels`` (HxW or HxWxC, any dtype), classic or Big, either byte order.

    ``declared`` overrides the width and height in the header; ``compression`` is 1 (none), 8 (deflate)
    or 34925 (LZMA); ``pages`` repeats the image in chained directories.
    """
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    raw = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    data = {1: raw, 8: zlib.compress(raw), 34925: lzma.compress(raw)}[compression]
    width, height = declared or (w, h)
    kind = {"u": 1, "i": 2, "f": 3}[pixels.dtype.kind]
    photometric = photometric if photometric is not None else (1 if c < 3 else 2)
    inline, count_fmt, entry_fmt, offset_fmt = (8, "Q", "HHQ", "Q") if big else (4, "H", "HHI", "I")
    out = bytearray(order.replace("<", "II").replace(">", "MM").encode())
    out += struct.pack(order + "H", 43 if big else 42) + (struct.pack(order + "HH", 8, 0) if big else b"")
    pointer = len(out)  # where the offset of the next directory goes
    out += bytes(inline)
    for _ in range(pages):
        strip = len(out)
        out += data + bytes(len(data) % 2)
        tags = [(256, 4, [width]), (257, 4, [height]), (258, 3, [8 * pixels.dtype.itemsize] * c), (259, 3, [compression]),
                (262, 3, [photometric]), (273, 4, [strip]), (274, 3, [orientation]), (277, 3, [c]), (278, 4, [height]),
                (279, 4, [len(data)]), (284, 3, [1]), (339, 3, [kind] * c)] + ([(338, 3, [2])] if c in (2, 4) else [])
        ifd = len(out)
        out[pointer:pointer + inline] = struct.pack(order + offset_fmt, ifd)
        after = ifd + struct.calcsize(count_fmt) + len(tags) * (4 + 2 * inline) + inline
        entries, spill = b"", b""
        for tag, typ, values in tags:
            packed = struct.pack(f"{order}{len(values)}{'H' if typ == 3 else 'I'}", *values)
            if len(packed) > inline:
                field = struct.pack(order + offset_fmt, after + len(spill))
                spill += packed
            else:
                field = packed.ljust(inline, b"\0")
            entries += struct.pack(order + entry_fmt, tag, typ, len(values)) + field
        out += struct.pack(order + count_fmt, len(tags)) + entries
        pointer = len(out)
        out += bytes(inline) + spill
    return bytes(out)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_resized(raw: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (CRC fixed), the pixel data left as it was."""
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    return raw[:8] + png_chunk(b"IHDR", ihdr) + raw[33:]


def grey2_png_with_trns(pixels: np.ndarray, transparent: int) -> bytes:
    """A 2-bit grey PNG (values 0-3) with a tRNS chunk naming ``transparent``."""
    h, w = pixels.shape
    rows = b"".join(b"\0" + np.packbits(np.unpackbits(row[:, None], axis=1)[:, 6:].ravel()).tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", w, h, 2, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"tRNS", struct.pack(">H", transparent))
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def small_file(path: Path, fmt: str, **kwargs) -> bytes:
    """The bytes of a small noise image saved by Pillow as ``fmt``."""
    Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path, format=fmt, **kwargs)
    return path.read_bytes()


def jpeg_resized(raw: bytes, width: int, height: int) -> bytes:
    """A JPEG whose SOF declares ``width`` x ``height``."""
    sof = raw.index(b"\xff\xc0")
    return raw[:sof + 5] + struct.pack(">HH", height, width) + raw[sof + 9:]


def gif_resized(raw: bytes, width: int, height: int) -> bytes:
    """A GIF whose logical screen declares ``width`` x ``height``."""
    return raw[:6] + struct.pack("<HH", width, height) + raw[10:]


def bmp_resized(raw: bytes, width: int, height: int) -> bytes:
    """A BMP whose info header declares ``width`` x ``height``."""
    return raw[:18] + struct.pack("<ii", width, height) + raw[26:]


def webp_resized(raw: bytes, width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header declares ``width`` x ``height`` (at most 16384 each)."""
    assert raw[12:16] == b"VP8L"
    (bits,) = struct.unpack("<I", raw[21:25])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | (height - 1) << 14
    return raw[:21] + struct.pack("<I", bits) + raw[25:]


# ---- checks ----------------------------------------------------------------------------------

def restore(scene: Scene, name: str, data: bytes, *options: object) -> tuple[Result, Path]:
    """Write ``data`` as ``name``, protect it, and restore it unchanged (``--strength 0``); the result and the output path."""
    src = scene.root / name
    src.write_bytes(data)
    scene.protect()
    result = cli("restore", src, "-o", scene.root / "out", "--weights", tiny_weights(), "-q", "--strength", "0",
                 "--max-pixels", LIMIT, *options)
    return result, scene.root / "out" / name


def refused_from_header(scene: Scene, name: str, data: bytes, *words: str) -> None:
    """A declared-huge file: refused, naming ``words``, in well under a second (nothing decoded).

    The bound is 2 s for the whole command on a loaded machine; decoding the huge float TIFF took 12 s.
    """
    tiny_weights()  # written once, outside the timing
    start = time.perf_counter()
    result, _ = restore(scene, name, data, "--ext", "png")  # png: a GIF cannot be written
    seconds = time.perf_counter() - start
    refused(result, *words)
    if seconds > 2.0:
        bad(f"{name}: refused after {seconds:.1f} s: decoded before its declared size was checked")


def same_pixels(result: Result, out: Path, expected: np.ndarray) -> None:
    """Exit 0 and ``out`` holds ``expected`` exactly (RGB order): same shape, dtype and channels."""
    if result.code != 0:
        bad(f"exit {result.code}, expected a correct output: {result.err[-300:]}")
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    if got is None:
        bad(f"{out.name}: no output written")
    if got.ndim == 3 and expected.ndim == 3 and expected.shape[2] == 2:  # grey + alpha: OpenCV reads BGRA
        got = got[:, :, [0, 3]]
    elif got.ndim == 3:
        got = cv2.cvtColor(got, cv2.COLOR_BGRA2RGBA if got.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if got.shape != expected.shape or got.dtype != expected.dtype:
        bad(f"{out.name}: {got.shape} {got.dtype} written for a {expected.shape} {expected.dtype} input")
    if not np.array_equal(got, expected):
        bad(f"{out.name}: pixels changed (mean {got.mean():.1f}, input {expected.mean():.1f})")


def with_pillow_alpha(out: Path) -> np.ndarray:
    """An 8-bit output as Pillow reads it (grey + alpha stays LA)."""
    with Image.open(out) as im:
        return np.asarray(im)


# ---- 1: sizes learnt from the header, refused before decoding ---------------------------------

@CASES.add
def huge_float_tiff_is_refused_from_its_header(scene: Scene) -> None:
    data = tiff_bytes(np.zeros((4, 4, 3), np.float32), declared=(10000, 10000), compression=8)
    refused_from_header(scene, "huge.tif", data, "10000x10000", "over the limit")


@CASES.add
def huge_bigtiff_big_endian_is_refused_from_its_header(scene: Scene) -> None:
    data = tiff_bytes(np.zeros((4, 4), np.uint16), declared=(30000, 20000), order=">", big=True)
    refused_from_header(scene, "huge.tif", data, "30000x20000", "over the limit")


@CASES.add
def huge_png_is_refused_from_its_header(scene: Scene) -> None:
    refused_from_header(scene, "huge.png", png_resized(small_file(scene.root / "s.png", "PNG"), 40000, 40000), "over the limit")


@CASES.add
def huge_jpeg_is_refused_from_its_header(scene: Scene) -> None:
    refused_from_header(scene, "huge.jpg", jpeg_resized(small_file(scene.root / "s.jpg", "JPEG"), 5000, 5000), "over the limit")


@CASES.add
def huge_gif_is_refused_from_its_header(scene: Scene) -> None:
    refused_from_header(scene, "huge.gif", gif_resized(small_file(scene.root / "s.gif", "GIF"), 6000, 6000), "over the limit")


@CASES.add
def huge_bmp_is_refused_from_its_header(scene: Scene) -> None:
    refused_from_header(scene, "huge.bmp", bmp_resized(small_file(scene.root / "s.bmp", "BMP"), 9000, 9000), "over the limit")


@CASES.add
def huge_webp_is_refused_from_its_header(scene: Scene) -> None:
    data = webp_resized(small_file(scene.root / "s.webp", "WEBP", lossless=True), 5000, 5000)
    refused_from_header(scene, "huge.webp", data, "over the limit")


@CASES.add
def zero_width_png_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "zero.png", png_resized(small_file(scene.root / "s.png", "PNG"), 0, 8))
    refused(result, "empty image")


# ---- 2: a fallback decoder never loses depth or channels --------------------------------------

@CASES.add
def png16_grey_without_iend_keeps_16_bits(scene: Scene) -> None:
    grey = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    cv2.imwrite(str(scene.root / "whole.png"), grey)
    result, out = restore(scene, "noiend.png", (scene.root / "whole.png").read_bytes()[:-12])
    same_pixels(result, out, grey)


@CASES.add
def png16_rgb_without_iend_is_refused(scene: Scene) -> None:
    cv2.imwrite(str(scene.root / "whole.png"), RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16))
    result, _ = restore(scene, "noiend.png", (scene.root / "whole.png").read_bytes()[:-12])
    refused(result, "3 channels x 16 bits", "losing data")


@CASES.add
def tiff16_grey_lzma_keeps_16_bits(scene: Scene) -> None:
    grey = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    result, out = restore(scene, "lzma.tif", tiff_bytes(grey, compression=34925))
    same_pixels(result, out, grey)


@CASES.add
def tiff16_rgb_lzma_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "lzma.tif", tiff_bytes(RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16), compression=34925))
    refused(result, "3 channels x 16 bits", "losing data")


@CASES.add
def bigtiff_big_endian_16_bit_rgb_reads_exactly(scene: Scene) -> None:
    rgb = RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    result, out = restore(scene, "big.tif", tiff_bytes(rgb, order=">", big=True, compression=8))
    same_pixels(result, out, rgb)


# ---- 3: float pixels out of [0, 1] ------------------------------------------------------------

@CASES.add
def float_tiff_out_of_range_is_refused(scene: Scene) -> None:
    pixels = RNG.uniform(-1.0, 2.0, (9, 11, 3)).astype(np.float32)
    result, _ = restore(scene, "range.tif", tiff_bytes(pixels))
    refused(result, "range from", "must be in [0, 1]")


@CASES.add
def float_grey_tiff_in_range_reads_exactly(scene: Scene) -> None:
    grey = RNG.random((9, 11), dtype=np.float32)
    result, out = restore(scene, "grey.tif", tiff_bytes(grey, compression=8))
    same_pixels(result, out, grey)


# ---- 4: transparency kept as alpha --------------------------------------------------------------

@CASES.add
def grey_png_with_transparent_value_keeps_it_as_alpha(scene: Scene) -> None:
    grey = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    grey[0, :3] = 17
    Image.fromarray(grey).save(scene.root / "t.png", transparency=17)
    result, out = restore(scene, "trns.png", (scene.root / "t.png").read_bytes())
    same_pixels(result, out, np.dstack([grey, np.where(grey == 17, 0, 255).astype(np.uint8)]))


@CASES.add
def grey16_png_with_transparent_value_keeps_it_as_alpha(scene: Scene) -> None:
    grey = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    grey[0, :3] = 4000
    Image.fromarray(grey).save(scene.root / "t.png", transparency=4000)
    result, out = restore(scene, "trns16.png", (scene.root / "t.png").read_bytes())
    same_pixels(result, out, np.dstack([grey, np.where(grey == 4000, 0, 65535).astype(np.uint16)]))


@CASES.add
def palette_png_with_transparency_keeps_it_as_alpha(scene: Scene) -> None:
    index = RNG.integers(0, 4, (9, 11), dtype=np.uint8)
    im = Image.frombytes("P", (11, 9), index.tobytes())
    im.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10, 10, 10, 200])
    im.save(scene.root / "t.png", transparency=bytes([255, 0, 128, 255]))
    expected = np.asarray(Image.open(scene.root / "t.png").convert("RGBA"))
    result, out = restore(scene, "palette.png", (scene.root / "t.png").read_bytes())
    same_pixels(result, out, expected)


@CASES.add
def rgb_png_with_transparent_colour_keeps_it_as_alpha(scene: Scene) -> None:
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    rgb[2, 2] = (1, 2, 3)
    Image.fromarray(rgb).save(scene.root / "t.png", transparency=(1, 2, 3))
    result, out = restore(scene, "rgbt.png", (scene.root / "t.png").read_bytes())
    alpha = np.where((rgb == (1, 2, 3)).all(axis=2), 0, 255).astype(np.uint8)
    same_pixels(result, out, np.dstack([rgb, alpha]))


@CASES.add
def grey2_png_with_transparent_value_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "grey2.png", grey2_png_with_trns(RNG.integers(0, 4, (6, 8), dtype=np.uint8), 2))
    refused(result, "2-bit grey", "transparent")


# ---- 5: the writer and unreadable depths never stop a batch -----------------------------------

@CASES.add
def jpeg_with_exif_too_long_for_jpeg_is_written_without_it(scene: Scene) -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000  # ImageDescription: over the 65,533 bytes a JPEG marker holds
    small_file(scene.root / "in.png", "PNG", exif=exif)
    result, _ = restore(scene, "in.png", (scene.root / "in.png").read_bytes(), "--ext", "jpg")
    if result.code != 0:
        bad(f"exit {result.code}: {result.err[-300:]}")
    with Image.open(scene.root / "out" / "in.jpg") as im:
        if im.size != (8, 8) or im.mode != "RGB":
            bad(f"in.jpg: {im.size} {im.mode} written for an 8x8 RGB input")


@CASES.add
def float64_tiff_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "f64.tif", tiff_bytes(RNG.random((9, 11, 3))))
    refused(result, "64-bit float")


@CASES.add
def batch_goes_on_past_every_unreadable_file(scene: Scene) -> None:
    (scene.root / "f64.tif").write_bytes(tiff_bytes(RNG.random((5, 6, 3))))
    (scene.root / "f16.tif").write_bytes(tiff_bytes(RNG.random((5, 6, 3)).astype(np.float16)))
    (scene.root / "int16.tif").write_bytes(tiff_bytes(RNG.integers(-9, 9, (5, 6), dtype=np.int16)))
    Image.fromarray(RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(scene.root / "good.png")
    scene.protect()
    result = cli("restore", scene.root, "-o", scene.root / "out", "--weights", tiny_weights(), "-q", "--strength", "0")
    refused(result, "f64.tif", "f16.tif", "int16.tif", "unsupported pixel type")
    if not (scene.root / "out" / "good.png").is_file():
        bad("good.png was not restored after the unreadable files")


# ---- 6: more of the same class ----------------------------------------------------------------

@CASES.add
def cmyk_jpeg_is_refused(scene: Scene) -> None:
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(scene.root / "c.jpg")
    result, _ = restore(scene, "cmyk.jpg", (scene.root / "c.jpg").read_bytes())
    refused(result, "CMYK", "convert it to RGB")


@CASES.add
def cmyk_tiff_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "cmyk.tif", tiff_bytes(RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8), photometric=5))
    refused(result, "CMYK", "convert it to RGB")


@CASES.add
def tiff_orientation_is_applied_once(scene: Scene) -> None:
    rgb = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    result, out = restore(scene, "rot.tif", tiff_bytes(rgb, orientation=6))
    same_pixels(result, out, np.ascontiguousarray(np.swapaxes(rgb, 0, 1)[:, ::-1]))  # 90 degrees clockwise, once


@CASES.add
def tiff16_grey_with_orientation_reads_upright(scene: Scene) -> None:
    grey = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)
    result, out = restore(scene, "rot16.tif", tiff_bytes(grey, orientation=8, compression=8))
    same_pixels(result, out, np.ascontiguousarray(np.swapaxes(grey, 0, 1)[::-1]))  # 90 degrees anticlockwise


@CASES.add
def tiff16_grey_lzma_with_orientation_is_refused(scene: Scene) -> None:
    """OpenCV cannot decode LZMA and Pillow turns grey pixels upright wrongly for orientations 5-8."""
    result, _ = restore(scene, "rot16.tif", tiff_bytes(RNG.integers(0, 65536, (6, 9), dtype=np.uint16), orientation=8, compression=34925))
    refused(result, "OpenCV cannot decode", "losing data")


@CASES.add
def jpeg_orientation_is_applied(scene: Scene) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (30, 10), 0).save(scene.root / "r.jpg", exif=exif, quality=100)
    result, _ = restore(scene, "rot.jpg", (scene.root / "r.jpg").read_bytes())
    if result.code != 0:
        bad(f"exit {result.code}: {result.err[-300:]}")
    with Image.open(scene.root / "out" / "rot.jpg") as im:
        if im.size != (10, 30) or im.getexif().get(0x0112) != 1:
            bad(f"rot.jpg written {im.size} with orientation {im.getexif().get(0x0112)}: expected upright 10x30, orientation 1")


@CASES.add
def multipage_float_tiff_is_refused(scene: Scene) -> None:
    result, _ = restore(scene, "pages.tif", tiff_bytes(RNG.random((5, 6, 3), dtype=np.float32), pages=2))
    refused(result, "multi-page")


@CASES.add
def corrupt_deflate_float_tiff_is_refused(scene: Scene) -> None:
    data = bytearray(tiff_bytes(RNG.random((20, 30, 3), dtype=np.float32), compression=8))
    data[40:80] = b"\xff" * 40  # inside the compressed strip
    result, _ = restore(scene, "corrupt.tif", bytes(data))
    refused(result, "corrupt.tif")


@CASES.add
def pillow_bomb_sized_png_is_refused_from_its_header(scene: Scene) -> None:
    data = png_resized(small_file(scene.root / "s.png", "PNG"), 65535, 65535)
    src = scene.root / "bomb.png"
    src.write_bytes(data)
    scene.protect()
    weights = tiny_weights()
    start = time.perf_counter()
    result = cli("restore", src, "-o", scene.root / "out", "--weights", weights, "-q", "--max-pixels", 10**10)
    refused(result, "decompression-bomb limit")
    if time.perf_counter() - start > 2.0:
        bad("bomb.png: refused only after decoding")


@CASES.add
def grey_alpha_tiff_8_bit_keeps_its_alpha(scene: Scene) -> None:
    la = RNG.integers(0, 256, (9, 11, 2), dtype=np.uint8)
    result, out = restore(scene, "la.tif", tiff_bytes(la))
    if result.code != 0:
        bad(f"exit {result.code}: {result.err[-300:]}")
    got = with_pillow_alpha(out)
    if got.shape != la.shape or not np.array_equal(got, la):
        bad(f"la.tif written as {got.shape} {got.dtype}, expected grey + alpha {la.shape}")
