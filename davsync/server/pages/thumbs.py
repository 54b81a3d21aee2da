"""Image thumbnails for the folder page, made on the Pi and kept in a bounded cache.

Only when Pillow is installed (it is not a runtime dependency on Linux: `pip install pillow`
turns thumbnails on); without it the page shows icons. A thumbnail is keyed by the file's
(device, inode, size, mtime_ns), so an edited photo gets a new one; the cache lives in the
state dir and is trimmed, oldest first, to `max_bytes`. Decoding is bounded too: at most
`WORKERS` at once, images above `MAX_PIXELS` are refused (a small file can claim a huge
canvas), and JPEGs are decoded at a reduced scale (`draft`), which is what keeps a Pi fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

log = logging.getLogger("davsync.server")
SIZE = 160
MAX_PIXELS = 60_000_000  # about a 60-megapixel photo
MAX_BYTES = 64 * 1024 * 1024
WORKERS = 2


_SHARED: dict[Path, Thumbnails] = {}
_SHARED_LOCK = threading.Lock()


def available() -> bool:
    return importlib.util.find_spec("PIL") is not None


def for_folder(folder: Path) -> Thumbnails:
    """One cache (and one bound on decoding) per folder: the share and its links' apps share it."""
    with _SHARED_LOCK:
        found = _SHARED.get(folder)
        if found is None:
            found = _SHARED[folder] = Thumbnails(folder)
        return found


class Thumbnails:
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.enabled = available()
        self._slots = threading.BoundedSemaphore(WORKERS)
        self._trim_lock = threading.Lock()

    def _key(self, st: os.stat_result) -> str:
        return hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:40]

    def get(self, file_path: str, st: os.stat_result) -> bytes | None:
        """A JPEG of at most SIZE x SIZE for the image at file_path, or None (not an image we can read)."""
        if not self.enabled:
            return None
        cached = self.folder / (self._key(st) + ".jpg")
        try:
            kept = cached.read_bytes()
            os.utime(cached)  # recently used: trimmed last
            return kept
        except OSError:
            pass
        with self._slots:
            made = self._make(file_path)
        if made is not None:
            self._store(cached, made)
        return made

    def _make(self, file_path: str) -> bytes | None:
        from PIL import Image, ImageOps

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(file_path) as opened:
                    if opened.width * opened.height > MAX_PIXELS:
                        return None
                    opened.draft("RGB", (SIZE * 2, SIZE * 2))  # JPEG: decode at 1/2../1/8 scale
                    im = ImageOps.exif_transpose(opened)  # photos taken upright-rotated
                    im.thumbnail((SIZE, SIZE))
                    out = io.BytesIO()
                    im.convert("RGB").save(out, "JPEG", quality=80)
                    return out.getvalue()
        except Exception as e:  # noqa: BLE001  (any undecodable or hostile file: no thumbnail, an icon instead)
            log.info("no thumbnail for %s: %s", os.path.basename(file_path), type(e).__name__)
            return None

    def _store(self, cached: Path, data: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
        except OSError as e:
            log.warning("Could not keep a thumbnail in %s: %s", self.folder, e.strerror)
            return
        self._trim()

    def _trim(self) -> None:
        with self._trim_lock:
            try:
                entries = [(e.stat().st_mtime, e.stat().st_size, e.path) for e in os.scandir(self.folder)
                           if e.name.endswith(".jpg")]  # fmt: skip
            except OSError:
                return
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                try:
                    os.unlink(path)
                    total -= size
                except OSError:
                    pass
