"""Document bytes: content checks (magic bytes, not names) and the storage they live in.

The storage is ``STORAGES["documents"]`` when configured (for example an S3-compatible
backend from django-storages), else a local directory at ``settings.DOCUMENTS_DIR``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages

from brokerdesk.core.errors import ValidationError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 60_000_000  # refuse decompression bombs

_EXTENSIONS = {
    "image/jpeg": ("jpg", {"jpg", "jpeg", "jfif"}),
    "image/png": ("png", {"png"}),
    "application/pdf": ("pdf", {"pdf"}),
}
# PDF features that run code or carry other files; identity documents never need them.
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch|EmbeddedFile|RichMedia)\b")


def document_storage() -> Storage:
    """Where document bytes are kept (looked up on each call so settings can change)."""
    if "documents" in settings.STORAGES:
        return storages["documents"]
    return FileSystemStorage(location=settings.DOCUMENTS_DIR, base_url=None)


def max_bytes() -> int:
    """The largest accepted document, in bytes."""
    return int(getattr(settings, "DOCUMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


@dataclass(frozen=True)
class Sniffed:
    """What the bytes are, whatever the upload claimed."""

    content_type: str
    extension: str


def _fail(message: str, code: str) -> ValidationError:
    return ValidationError(message, code=code, field="file")


def sniff(content: bytes) -> Sniffed:
    """Identify JPEG, PNG or PDF from magic bytes and check the structure; refuse anything else."""
    if not content:
        raise _fail("The file is empty.", "empty_file")
    if len(content) > max_bytes():
        raise _fail(f"The file is larger than {max_bytes()} bytes.", "file_too_large")
    if content.startswith(b"\xff\xd8\xff"):
        if len(content) < 128:
            raise _fail("The JPEG image is truncated.", "corrupt_file")
        return Sniffed("image/jpeg", "jpg")
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(content) < 33 or content[12:16] != b"IHDR":
            raise _fail("The PNG image is corrupt.", "corrupt_file")
        width, height = struct.unpack(">II", content[16:24])
        if width == 0 or height == 0 or width * height > MAX_IMAGE_PIXELS:
            raise _fail("The image dimensions are not acceptable.", "image_too_large")
        return Sniffed("image/png", "png")
    if content.startswith(b"%PDF-"):
        if b"%%EOF" not in content[-1024:]:
            raise _fail("The PDF is truncated.", "corrupt_file")
        if _PDF_ACTIVE.search(content):
            raise _fail(
                "PDFs with scripts, actions or embedded files are not accepted.", "active_content"
            )
        return Sniffed("application/pdf", "pdf")
    raise _fail("Only JPEG, PNG and PDF files are accepted.", "unsupported_type")


def check_declared(sniffed: Sniffed, *, filename: str, declared_content_type: str | None) -> None:
    """The name's extension and the declared type must agree with the bytes."""
    _, allowed = _EXTENSIONS[sniffed.content_type]
    if filename and "." in filename:
        extension = filename.rsplit(".", 1)[1].lower()
        if extension not in allowed:
            raise _fail(
                f"The file is {sniffed.content_type} but is named .{extension}.",
                "extension_mismatch",
            )
    if declared_content_type and declared_content_type.split(";")[0].strip().lower() not in (
        sniffed.content_type,
        "application/octet-stream",
    ):
        raise _fail(
            f"The file is {sniffed.content_type}, not {declared_content_type}.",
            "content_type_mismatch",
        )
