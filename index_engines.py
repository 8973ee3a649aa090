# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Which storage engine an index location names, and opening it: a folder is the exact folder index
(`folder_index.FolderIndex`), a `*.db` file or a server URI a Milvus collection (`milvus_index.MilvusIndex`, imported
only when asked for, so pymilvus stays an optional extra). The CLI, the Python API and the app open indexes here and
never name an engine's class.
"""

from __future__ import annotations

from index_store import EngineNotInstalledError, IndexStore


MILVUS_PREFIXES = ("http://", "https://", "tcp://", "unix:")


def is_milvus_location(location: str) -> bool:
    """True for a Milvus Lite file (`*.db`) or a Milvus server URI."""
    return str(location).endswith(".db") or str(location).startswith(MILVUS_PREFIXES)


def engine_for(location: str) -> type[IndexStore]:
    """The `IndexStore` class for `location` (Milvus imported only when asked for)."""
    if is_milvus_location(location):
        try:
            from milvus_index import MilvusIndex
        except ImportError as error:
            raise EngineNotInstalledError(
                f"{location}: a Milvus location needs pymilvus (pip install -e \".[milvus]\"; {error})") from None
        return MilvusIndex
    from folder_index import FolderIndex

    return FolderIndex


def open_index(location: str | IndexStore, writer: str | None = None, **options) -> IndexStore:
    """An index opened for queries (an already opened `IndexStore` is returned as it is)."""
    if isinstance(location, IndexStore):
        return location
    return engine_for(str(location)).open(str(location), writer=writer, **options)


def create_index(location: str, meta: dict, overwrite: bool = False, **options) -> IndexStore:
    """An index opened (or created) for an update run: see `IndexStore.create`."""
    return engine_for(str(location)).create(str(location), meta, overwrite=overwrite, **options)


__all__ = ["MILVUS_PREFIXES", "create_index", "engine_for", "is_milvus_location", "open_index"]
