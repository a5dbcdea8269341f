"""Large objects streamed through the repository's stores, which read and write whole objects only.

A scored file is larger than memory should hold, so reads go through a seekable file object (Parquet reads its
footer and then only the columns it needs) and writes through a file that becomes the object at `commit`: a local
temporary file renamed over the key, or a temporary Cloud Storage object copied to the key and deleted. Either
way a reader sees the old object or the whole new one, never a part. Any other store falls back to whole objects.
"""
from __future__ import annotations

import io
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO

from shared.store import GcsStore, LocalStore, NotFound, Store

GCS_CHUNK_BYTES = 16 * 1024 * 1024  # resumable upload and ranged read size (a multiple of 256 KiB)


def open_read(store: Store, key: str) -> BinaryIO:
    """A seekable binary file over an object; NotFound if absent."""
    if isinstance(store, LocalStore):
        try:
            return open(_local_path(store, key), "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(key) from None
    if isinstance(store, GcsStore):
        blob = store.bucket.get_blob(store.prefix + key, timeout=store.timeout)
        if blob is None:
            raise NotFound(key)
        return blob.open("rb", chunk_size=GCS_CHUNK_BYTES)
    data, _ = store.read(key)
    return io.BytesIO(data)


def object_size(store: Store, key: str) -> int:
    """An object's size in bytes; NotFound if absent."""
    if isinstance(store, LocalStore):
        try:
            return _local_path(store, key).stat().st_size
        except FileNotFoundError:
            raise NotFound(key) from None
    if isinstance(store, GcsStore):
        blob = store.bucket.get_blob(store.prefix + key, timeout=store.timeout)
        if blob is None:
            raise NotFound(key)
        return int(blob.size)
    return len(store.read(key)[0])


class AtomicObject:
    """A file that becomes the object `key` only at `commit`; `abort` leaves the key as it was.

    `sink` is what to write to: a local path (a temporary file beside the key, hidden from listings by its leading
    dot) for writers that open files themselves, or else a binary file object.
    """

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key
        self._temp: str | None = None
        self.file: BinaryIO | None = None
        if isinstance(store, LocalStore):
            path = _local_path(store, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.fchmod(fd, 0o644)
            os.close(fd)
        elif isinstance(store, GcsStore):
            self._temp = f"{key}.{secrets.token_hex(6)}.tmp"
            blob = store.bucket.blob(store.prefix + self._temp, chunk_size=GCS_CHUNK_BYTES)
            self.file = blob.open("wb", ignore_flush=True)
        else:
            self.file = io.BytesIO()

    @property
    def sink(self) -> str | BinaryIO:
        return self._temp if self.file is None else self.file

    def commit(self) -> None:
        """Make the written bytes the object at `key`, whole (whoever wrote to `sink` has closed it)."""
        store = self.store
        if isinstance(store, LocalStore):
            fd = os.open(self._temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temp, _local_path(store, self.key))
        elif isinstance(store, GcsStore):
            self.file.close()  # finalises the temporary object
            source = store.bucket.blob(store.prefix + self._temp)
            target = store.bucket.blob(store.prefix + self.key)
            token, _, _ = target.rewrite(source, timeout=store.timeout)
            while token is not None:  # large objects are copied in several calls
                token, _, _ = target.rewrite(source, token=token, timeout=store.timeout)
            store.delete(self._temp)
        else:
            store.write(self.key, self.file.getvalue())
        self._temp = None

    def abort(self) -> None:
        """Drop what was written; the object at `key` is untouched."""
        try:
            if self.file is not None:
                self.file.close()
        finally:
            if self._temp is not None:
                if isinstance(self.store, LocalStore):
                    Path(self._temp).unlink(missing_ok=True)
                else:
                    self.store.delete(self._temp)
                self._temp = None


def _local_path(store: LocalStore, key: str) -> Path:
    path = (store.root / key).resolve()
    if store.root not in path.parents:
        raise ValueError(f"key {key!r} escapes the store")
    return path
