"""Photos of inspection visits, kept under `state_dir/photos/` (SPEC: "a photo is copied under state_dir").

A file is kept only once it has been read whole and decoded as an image (JPEG, PNG or WebP, what a phone's camera
and its screenshots give) of at most `MAX_BYTES`; anything else is refused with the reason, before anything is
recorded. A photo is stored under the SHA-256 of its bytes, written to a temporary file, synced and renamed: a crash
leaves the photo whole or absent, and the same photo given twice is one file.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from quotad.core.errors import UsageError
from quotad.core.i18n import _

__all__ = ["FORMATS", "MAX_BYTES", "Photo", "keep", "read"]

MAX_BYTES = 10 * 1024 * 1024  # a phone's photo is 2-6 MB
MAX_PIXELS = 60_000_000  # a 50-megapixel sensor's image; far beyond is a decompression bomb, not a photo
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class Photo:
    data: bytes
    sha256: str
    kind: str  # jpg | png | webp
    width: int
    height: int

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.kind}"

    def record(self) -> dict[str, object]:
        """What the journal keeps of it: where it is (under state_dir), its digest, size and type."""
        return {"file": f"photos/{self.name}", "sha256": self.sha256, "bytes": len(self.data), "type": self.kind,
                "width": self.width, "height": self.height}  # fmt: skip


def read(path: Path) -> Photo:
    """The photo at `path`, checked; UsageError (exit 2) saying why it is refused."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(_("cannot read the photo {path}: {error}").format(path=path, error=exc.strerror)) from None
    if len(data) > MAX_BYTES:
        msg = _("the photo {path} is larger than {mb} MB: send a smaller one (a phone's usual photo is 2-6 MB)")
        raise UsageError(msg.format(path=path, mb=MAX_BYTES // (1024 * 1024)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = FORMATS.get(image.format or "")
                if kind is None:
                    raise UsageError(_("the photo {path} is a {format} image: JPEG, PNG or WebP only").format(
                        path=path, format=image.format))  # fmt: skip
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise UsageError(_("the photo {path} is {width}x{height} pixels: too large to be a photo").format(
                        path=path, width=width, height=height))  # fmt: skip
                image.load()  # decoded whole: a truncated or damaged file fails here
    except UsageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as exc:
        msg = _("{path} is not a readable image ({error}): nothing recorded")
        raise UsageError(msg.format(path=path, error=exc)) from None
    return Photo(data, hashlib.sha256(data).hexdigest(), kind, width, height)


def keep(photo: Photo, state_dir: Path) -> tuple[Path, bool]:
    """Store `photo` under `state_dir/photos/`; (its path, whether it was new)."""
    folder = state_dir / "photos"
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / photo.name
    if target.is_file() and target.stat().st_size == len(photo.data):
        return target, False
    temporary = folder / f".{photo.name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(photo.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target, True
