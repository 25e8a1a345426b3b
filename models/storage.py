"""The registry's files on any fsspec filesystem: a local folder, `file://`, `memory://`, `s3://`, `gs://`.

Every read and write of the registry goes through `RegistryStorage`, addressed by names relative to
the registry's root (`champion.json`, `<version>/model.joblib`). Two writes must never be seen half
done, and each filesystem gives that its own way:

- a local folder: a file is written under a temporary name and renamed over the old one; a version is
  assembled in a staging folder and renamed into place;
- an object store (and fsspec's memory filesystem): one put of a whole object is atomic; a version's
  files are put with its metadata last, and a version counts only once its metadata exists.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pql.config import ConfigError, registry_location_problem

RegistryLocation = Path | str
"""A registry as settings name it: a local folder (Path) or an fsspec URL (str)."""


def is_url(location: RegistryLocation) -> bool:
    return isinstance(location, str) and "://" in location


def joined(location: RegistryLocation, *parts: str) -> RegistryLocation:
    """`parts` inside `location`, spelt the same way (a Path stays a Path, a URL a URL)."""
    if isinstance(location, Path):
        return location.joinpath(*parts)
    return "/".join([location.rstrip("/"), *parts])


def existing_file(folder: RegistryLocation, name: str) -> RegistryLocation | None:
    """`folder/name` when that file exists (on whichever filesystem `folder` is), else None."""
    store = open_registry(folder)
    return store.where(name) if store.is_file(name) else None


@dataclass(frozen=True)
class RegistryStorage:
    """One registry folder on one filesystem. `location` is how messages and results name it."""

    location: RegistryLocation
    fs: fsspec.AbstractFileSystem
    root: str

    @property
    def is_local(self) -> bool:
        """Whether the files are on this machine's own file system (a path or a `file://` URL)."""
        return isinstance(self.fs, LocalFileSystem)

    @property
    def identity(self) -> str:
        """The same text for every spelling of the same registry (relative path, file:// URL, ...)."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.root}"

    def where(self, *parts: str) -> RegistryLocation:
        """The location of `parts` inside the registry, spelt as the registry was named."""
        return joined(self.location, *parts)

    def local_path(self, *parts: str) -> Path | None:
        """The local file system path of `parts`, or None on a remote filesystem."""
        return Path(self._path(*parts)) if self.is_local else None

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self._path(*parts)))

    def is_file(self, *parts: str) -> bool:
        return bool(self.fs.isfile(self._path(*parts)))

    def is_dir(self, *parts: str) -> bool:
        return bool(self.fs.isdir(self._path(*parts)))

    def read_bytes(self, *parts: str) -> bytes:
        """The file's bytes; FileNotFoundError (an OSError) when it is not there."""
        return bytes(self.fs.cat_file(self._path(*parts)))

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode("utf-8")

    def folders(self) -> list[str]:
        """The names of the folders directly inside the registry (none when it does not exist yet)."""
        if not self.fs.isdir(self.root):
            return []
        entries = self.fs.ls(self.root, detail=True)
        names = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")
        return sorted(names)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Replace the file `name` so that readers see the old bytes or the new ones, never a part."""
        target = self._path(name)
        if not self.is_local:
            self.fs.pipe_file(target, data)
            return
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        temporary = self._path(posixpath.dirname(name), f".{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp")
        try:
            self.fs.pipe_file(temporary, data)
            # os.replace, not fs.mv: a rename over the old file is the atomic step, spelt out.
            os.replace(temporary, target)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def write_folder(self, name: str, files: dict[str, bytes], *, last: str) -> None:
        """Create the folder `name` holding `files`, all at once where the filesystem can rename a
        folder, else each file put in turn with `last` put last (readers wait for that one)."""
        if not self.is_local:
            for file_name, data in sorted(files.items(), key=lambda item: item[0] == last):
                self.fs.pipe_file(self._path(name, file_name), data)
            return
        self.fs.makedirs(self.root, exist_ok=True)
        staging = self._path(f".incoming-{name}")
        if self.fs.exists(staging):
            self.fs.rm(staging, recursive=True)
        self.fs.makedirs(staging)
        for file_name, data in files.items():
            self.fs.pipe_file(posixpath.join(staging, file_name), data)
        os.replace(staging, self._path(name))


def open_registry(location: RegistryLocation | RegistryStorage) -> RegistryStorage:
    """The storage of a registry named by a local path, an fsspec URL, or already opened.

    A URL whose filesystem package is not installed (s3fs for `s3://`, gcsfs for `gs://`) is a
    ConfigError naming the package."""
    if isinstance(location, RegistryStorage):
        return location
    if is_url(location):
        problem = registry_location_problem(str(location))
        if problem:
            raise ConfigError(f"registry_path {location!r}: {problem}")
        fs, root = fsspec.core.url_to_fs(str(location))
        return RegistryStorage(str(location), fs, root.rstrip("/") or "/")
    path = Path(location)
    fs = LocalFileSystem()
    return RegistryStorage(path, fs, fs._strip_protocol(str(path)))
