# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Small helpers shared by the scripts: atomic files and folders.

Every file the project writes for a user (index shards, manifests, checkpoints, converted models) goes through one
of these, so a kill or a full disk at any moment leaves either the previous content or the new one, never half of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, os.PathLike]
#: Prefix of the temporary siblings written by `atomic_write` / `atomic_directory` (readers skip such names).
TMP_PREFIX = ".tmp-"


def temporary_sibling(path: PathLike) -> Path:
    """A unique temporary name next to `path` (same folder, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Writes `path` through a temporary file in the same folder, fsynced and renamed over `path` on success.

    On any error (disk full, an exception in the `with` body) the temporary file is removed and `path` keeps its
    previous content.
    """
    path = Path(path)
    temporary = temporary_sibling(path)
    try:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: PathLike, data: Any, indent: int = 1) -> None:
    """`json.dump` through `atomic_write`."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=indent)


def write_text(path: PathLike, text: str) -> None:
    """A text file through `atomic_write`."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_directory(path: PathLike, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary folder next to `path`; on success it is renamed to `path`.

    `path` must not exist unless `replace=True`, in which case the old folder is swapped out only after the new one
    is complete (a kill in between leaves the old one or the new one). On error the temporary folder is removed and
    nothing at `path` changes.
    """
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path}: already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            previous = temporary_sibling(path)
            os.replace(path, previous)
            os.replace(temporary, path)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


class ModelSourceError(FileNotFoundError):
    """A `--model_name_or_path` / `--model` value that names neither an existing folder nor a reachable Hub repo."""


def _looks_like_local_path(name: str) -> bool:
    """True for names a user means as a path: './x', '../x', '/x', '~/x', 'a/b/c', 'x\\y', or not a valid repo id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_model_source(name_or_path: PathLike) -> str:
    """`name_or_path` as given, after checking it can be what it claims to be.

    An existing folder is returned as is; an existing file, or a path-like name (see `_looks_like_local_path`) with
    no folder behind it, raises `ModelSourceError` saying that the folder does not exist. Anything else is a Hub id
    and is returned for `from_pretrained` to fetch (which gives the Hub's own error when it is unknown or offline).
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelSourceError(f"{name}: is a file; a model is a folder (config.json, weights) or a Hub repo id")
    if _looks_like_local_path(name):
        raise ModelSourceError(f"{name}: no such folder (and not a Hub repo id)")
    return name
