"""Typed errors raised by the benchmark builders.

Every error names the file (and, where it applies, the line or entry) and the reason, so that a
user can fix the data without reading the builder code.
"""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, os.PathLike]


class BenchmarkError(Exception):
    """Base class of every error raised by `datasets_scripts`."""


class UnknownBenchmarkError(BenchmarkError, KeyError):
    """The benchmark name or split is not one of the registered ones."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class BenchmarkFileNotFoundError(BenchmarkError, FileNotFoundError):
    """A split or annotation file needed by a benchmark is not in `data_dir`."""

    def __init__(self, filename: str, searched: list[str]):
        self.filename = filename
        self.searched = list(searched)
        super().__init__(f"{filename}: not found (looked in: {', '.join(self.searched)})")

    def __str__(self) -> str:
        return self.args[0]


class SplitFileError(BenchmarkError, ValueError):
    """A split or annotation file is malformed.

    Attributes:
        path: the file.
        reason: what is wrong.
        line: 1-based line number in a text file, if known.
        entry: the place in a json/pickle structure (e.g. `sentences[12]`), if known.
    """

    def __init__(self, path: PathLike, reason: str, line: Optional[int] = None, entry: Optional[str] = None):
        self.path = os.fspath(path)
        self.reason = reason
        self.line = line
        self.entry = entry
        where = self.path
        if line is not None:
            where += f": line {line}"
        if entry is not None:
            where += f": {entry}"
        super().__init__(f"{where}: {reason}")


class UnsafePickleError(SplitFileError):
    """A pickle file asks for a Python object other than plain containers, strings and numbers."""


class BenchmarkValidationError(BenchmarkError):
    """Raised in `strict=True` mode when validation finds problems (missing videos, duplicates...).

    Attributes:
        report: the `DataReport` with every problem found.
    """

    def __init__(self, message: str, report=None):
        self.report = report
        super().__init__(message)
