# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Small helpers shared by the scripts: atomic files and folders, model sources, model folders.

Every file the project writes for a user (index shards, manifests, checkpoints, converted models) goes through one
of these, so a kill or a full disk at any moment leaves either the previous content or the new one, never half of it.
A model folder's processor is read by `load_processor` and its card written by `build_model_card`, the same way for
the training script, the search script and the converter.
"""

from __future__ import annotations

import argparse
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
#: CLIP's BPE tokenizer files shipped with the repository (models from scratch, converted checkpoints).
CLIP_TOKENIZER_DIR = Path(__file__).resolve().parent / "clip_tokenizer"


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


def below(value, minimum: int) -> str | None:
    """Why `value` is not an integer `>= minimum`, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"must be an integer >= {minimum}, got {value!r}"
    return None


def check_at_least(arguments, minimum: int, *names: str) -> None:
    """Raises ValueError naming the option (`--name`, `-k`) when one of the integer fields `names` of an arguments
    dataclass is below `minimum`."""
    for name in names:
        problem = below(getattr(arguments, name), minimum)
        if problem:
            raise ValueError(f"{'-' if len(name) == 1 else '--'}{name} {problem}")


def int_at_least(minimum: int):
    """An argparse `type=` for plain `ArgumentParser` scripts (benchmarks, demos): an integer `>= minimum`, else
    argparse's message naming the option."""

    def parse(text: str) -> int:
        value = int(text)
        if below(value, minimum):
            raise argparse.ArgumentTypeError(below(value, minimum))
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


@contextlib.contextmanager
def files_into_directory(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields an empty staging folder next to `path`; on success the files written there land in `path`.

    - `path` absent or an empty folder: the staging folder is renamed onto it (one atomic rename on POSIX).
    - `path` a folder with content: refused with `FileExistsError` unless `overwrite=True`; then each staged file
      replaces the file of the same name (`os.replace`, atomic per file) and every other file of `path` is kept.
      A staged name that is a folder (or a file under a file) in `path` is refused before anything moves.

    On any error (disk full, an exception in the `with` body) the staging folder is removed and `path` is exactly
    as before: a failed run never leaves a half-written folder, and nothing the run did not write is deleted.
    """
    check_output_folder(path, overwrite)
    path = Path(path).resolve()  # '.', '..' and symlinks: the staging folder must sit on the same file system
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(path)
    staging.mkdir()
    try:
        yield staging
        try:
            os.replace(staging, path)  # absent, or an empty folder: replaced atomically
        except OSError:
            if not (overwrite and path.is_dir()):
                raise
            _move_files_into(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_output_folder(path: PathLike, overwrite: bool) -> None:
    """Raise unless `files_into_directory(path, overwrite)` may write there: `path` is absent, an empty folder, or a
    folder with content and `overwrite=True` (`NotADirectoryError` for a file, `FileExistsError` otherwise)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is not a folder")
    if path.is_dir() and not overwrite and any(path.iterdir()):
        raise FileExistsError(f"{path}: folder exists and is not empty")


def _move_files_into(source: Path, target: Path) -> None:
    """Move every file under `source` to the same relative path under `target`, replacing files of that name."""
    staged = sorted(p.relative_to(source) for p in source.rglob("*") if not p.is_dir())
    for relative in staged:
        for parent in reversed(relative.parents[:-1]):  # every folder on the way must be a folder (or absent)
            if (target / parent).exists() and not (target / parent).is_dir():
                raise FileExistsError(f"{target / parent}: is a file; cannot write {relative} under it")
        destination = target / relative
        if destination.is_dir() and not destination.is_symlink():
            raise IsADirectoryError(f"{destination}: is a folder; cannot replace it with a file")
    for relative in staged:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source / relative, target / relative)


# ----------------------------------------------------------------------------------------------------------------------
# Model folders: the processor saved with a model, the model card
# ----------------------------------------------------------------------------------------------------------------------


class ProcessorNotFoundError(FileNotFoundError):
    """A model folder or Hub repo with no readable CLIP2Video processor (the message names it and says why)."""


def load_processor(name_or_path: PathLike, trust_remote_code: bool = False):
    """The `CLIP2VideoProcessor` saved with a model (a folder or a Hub id).

    With `trust_remote_code=True`, `AutoProcessor` runs the processing code stored next to the model (as `AutoModel`
    does for the model). Without it, this repository's classes read the saved settings (`processor_config.json`)
    and the tokenizer files: no code from the folder is executed.

    Raises:
        ProcessorNotFoundError: `name_or_path` holds no readable CLIP2Video processor (a CLIP model, a folder without
            `processor_config.json`, a damaged file).
    """
    source = os.fspath(name_or_path)
    try:
        if trust_remote_code:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
        else:
            processor = _processor_from_saved_settings(source)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ProcessorNotFoundError(f"{source}: no CLIP2Video processor ({type(error).__name__}: {error})") from error
    if type(processor).__name__ != "CLIP2VideoProcessor":  # the remote-code class is not this module's class
        raise ProcessorNotFoundError(f"{source}: its processor is a {type(processor).__name__}, "
                                     "not a CLIP2VideoProcessor")
    return processor


def _processor_from_saved_settings(source: str):
    """`CLIP2VideoProcessor` from `processor_config.json` and the tokenizer files, with this repository's classes."""
    from transformers import CLIPTokenizer
    from transformers.utils import cached_file

    from processing_clip2video import CLIP2VideoProcessor, CLIP2VideoVideoProcessor

    saved = json.loads(Path(cached_file(source, "processor_config.json")).read_text(encoding="utf-8"))
    if not isinstance(saved, dict) or not isinstance(saved.get("video_processor", {}), dict):
        raise ValueError("processor_config.json is not a CLIP2Video processor's (no `video_processor` settings)")
    video = {k: v for k, v in saved.get("video_processor", {}).items() if k not in ("auto_map", "video_processor_type")}
    return CLIP2VideoProcessor(CLIP2VideoVideoProcessor(**video), CLIPTokenizer.from_pretrained(source),
                               max_words=saved.get("max_words", 32),
                               text_pad_token_id=saved.get("text_pad_token_id", 0))
