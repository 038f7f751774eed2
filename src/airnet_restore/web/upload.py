"""Receive the multipart field ``image`` straight into a private folder, within a byte limit.

Only the part named ``image`` touches the disk, as ``upload`` (``upload.tif`` for TIFF data,
which the reader needs to know); the client's file name is never used as a path, only
cleaned into the download's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD = "image"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


class UploadError(Exception):
    """A request the server refuses: ``status`` and a one-line message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """The received image file and the name its result is offered under."""

    path: Path
    download_name: str


def download_name(client_name: str | None) -> str:
    """``<stem>_restored.png`` from a client's file name: last path component, safe characters only."""
    base = re.split(r"[\\/]", client_name or "")[-1]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base.rsplit(".", 1)[0] if "." in base else base).strip("._")[:100]
    return f"{stem or 'image'}_restored.png"


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header, or a 400 ``UploadError``."""
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(400, f"send the image as multipart/form-data in the field '{FIELD}'")
    return boundary


async def receive_image(
    chunks: AsyncIterator[bytes], content_type: str | None, folder: Path, max_bytes: int
) -> Upload:
    """Stream a multipart body into ``folder``; at most ``max_bytes`` are read (413 beyond)."""
    boundary = boundary_of(content_type)
    parser_state = _Parts(folder)
    total = 0
    try:
        parser = MultipartParser(boundary, parser_state.callbacks())  # refuses an over-long boundary
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise UploadError(413, f"upload over the limit of {max_bytes:,} bytes (--max-upload-mb)")
            parser.write(chunk)
            if parser_state.error:
                raise UploadError(400, parser_state.error)
        parser.finalize()
    except FormParserError as e:  # the parser's errors, a malformed body's included
        raise UploadError(400, f"malformed multipart body ({e})") from None
    finally:
        parser_state.close()
    return parser_state.result()


class _Parts:
    """Callbacks of python-multipart's streaming parser: keep the ``image`` part, skip the others."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.headers: dict[bytes, bytes] = {}
        self.name: list[bytes] = []
        self.value: list[bytes] = []
        self.file: BinaryIO | None = None
        self.writing = False
        self.done = False
        self.client_name: str | None = None
        self.size = 0
        self.error: str | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.headers.clear,
            "on_header_field": lambda d, s, e: self.name.append(d[s:e]),
            "on_header_value": lambda d, s, e: self.value.append(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.data,
            "on_part_end": self.part_end,
        }

    def header_end(self) -> None:
        self.headers[b"".join(self.name).strip().lower()] = b"".join(self.value).strip()
        self.name.clear()
        self.value.clear()

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if params.get(b"name") != FIELD.encode():
            return
        if self.done or self.writing:
            self.error = f"more than one '{FIELD}' part; send one image per request"
            return
        filename = params.get(b"filename")
        self.client_name = filename.decode("utf-8", "replace") if filename is not None else None
        self.file = os.fdopen(os.open(self.folder / "upload", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self.writing = True

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.writing and not self.error:
            assert self.file is not None  # opened by headers_finished before writing starts
            self.size += self.file.write(data[start:end])

    def part_end(self) -> None:
        if self.writing:
            self.writing, self.done = False, True

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def result(self) -> Upload:
        if not self.done:
            raise UploadError(400, f"no file in the multipart field '{FIELD}'")
        if self.size == 0:
            raise UploadError(400, "empty file (0 bytes)")
        path = self.folder / "upload"
        with open(path, "rb") as f:
            if f.read(4) in TIFF_MAGIC:
                path = path.rename(path.with_suffix(".tif"))
        return Upload(path, download_name(self.client_name))
