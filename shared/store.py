"""Object stores: one small interface, a local directory (the embedded default) and Cloud Storage.

Every object has a generation, so writers can make compare-and-swap updates: `if_generation_match=0`
creates an object only if it does not exist, any other number replaces it only if it is unchanged.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


class NotFound(Exception):
    """The object does not exist."""


class PreconditionFailed(Exception):
    """The object's generation was not the one expected: another writer got there first."""


class StoreUnavailable(Exception):
    """The store could not be reached or answered with a server error."""


class Store(Protocol):
    """What the function and the job need of a bucket."""

    uri: str

    def read(self, key: str) -> tuple[bytes, int]:
        """Object bytes and generation; NotFound if absent."""

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        """Store bytes, optionally only at an expected generation (0: must not exist); new generation."""

    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""

    def delete(self, key: str) -> None:
        """Remove an object (absent is fine)."""


def content_generation(data: bytes) -> int:
    """A local object's generation: a content hash, so equal bytes mean 'unchanged' across processes."""
    return int.from_bytes(hashlib.sha256(data).digest()[:7], "big") + 1


class LocalStore:
    """A directory as a bucket: atomic renames for writes, a lock file for compare-and-swap."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the store")
        return path

    def read(self, key: str) -> tuple[bytes, int]:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        return data, content_generation(data)

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if if_generation_match == 0:
                try:
                    os.link(tmp, path)  # atomic create-if-absent
                except FileExistsError:
                    raise PreconditionFailed(key) from None
            elif if_generation_match is None:
                os.replace(tmp, path)
            else:
                with open(self.root / ".lock", "a+b") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    try:
                        current = content_generation(path.read_bytes())
                    except FileNotFoundError:
                        current = 0
                    if current != if_generation_match:
                        raise PreconditionFailed(key)
                    os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return content_generation(data)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(start):
            for name in files:
                if name.startswith("."):
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), self.root)
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass


class GcsStore:
    """A bucket (and optional prefix) through the official google-cloud-storage client."""

    def __init__(self, uri: str, timeout_s: float = 5.0) -> None:
        from google.api_core import exceptions, retry  # noqa: PLC0415 - only GCS users pay for the import
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415
        from google.cloud import storage  # noqa: PLC0415

        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        self.uri = uri
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.timeout = timeout_s
        self._exc = exceptions
        self._auth_error = GoogleAuthError
        self._retry = retry.Retry(initial=0.1, maximum=1.0, timeout=timeout_s,
                                  predicate=retry.if_transient_error)
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

            client = storage.Client(project="local-emulator", credentials=AnonymousCredentials())
        else:
            client = storage.Client()
        self.bucket = client.bucket(bucket)

    def _call(self, key: str, fn):
        try:
            return fn()
        except self._exc.NotFound:
            raise NotFound(key) from None
        except self._exc.PreconditionFailed:
            raise PreconditionFailed(key) from None
        except (self._exc.GoogleAPIError, self._auth_error, OSError) as exc:
            # OSError covers requests' connection errors and timeouts
            raise StoreUnavailable(f"{key}: {type(exc).__name__}") from exc

    def read(self, key: str) -> tuple[bytes, int]:
        def go():
            blob = self.bucket.blob(self.prefix + key)
            data = blob.download_as_bytes(timeout=self.timeout, retry=self._retry)
            return data, int(blob.generation)
        return self._call(key, go)

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        def go():
            blob = self.bucket.blob(self.prefix + key)
            blob.upload_from_string(data, if_generation_match=if_generation_match,
                                    timeout=self.timeout, retry=self._retry)
            return int(blob.generation)
        return self._call(key, go)

    def list(self, prefix: str) -> list[str]:
        def go():
            blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix,
                                                  timeout=self.timeout, retry=self._retry)
            return sorted(b.name[len(self.prefix):] for b in blobs)
        return self._call(prefix, go)

    def delete(self, key: str) -> None:
        def go():
            try:
                self.bucket.blob(self.prefix + key).delete(timeout=self.timeout, retry=self._retry)
            except self._exc.NotFound:
                pass
        self._call(key, go)


def open_store(uri: str, timeout_s: float = 5.0) -> Store:
    """A `gs://bucket/prefix` URI opens Cloud Storage; anything else is a local directory."""
    if uri.startswith("gs://"):
        return GcsStore(uri, timeout_s)
    return LocalStore(uri)
