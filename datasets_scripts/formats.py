"""Readers for the benchmark split and annotation files, in their original formats.

| file | format |
|---|---|
| `MSRVTT_JSFUSION_test.csv` | csv, header `key,vid_key,video_id,sentence`, one caption per row |
| `MSRVTT_train.9k.csv`, `MSRVTT_train.7k.csv`, `MSRVTT_{train,val,test}.full.csv` | csv, header `video_id` |
| `MSRVTT_data.json` | `{"sentences": [{"video_id": ..., "caption": ...}, ...], ...}` |
| `{train,val,test}_list.txt`, `test1k5_sec_list.txt` (MSVD, VATEX) | one video id per line |
| `raw-captions.pkl` (MSVD) | pickle of a dict video id -> list of captions, each a list of word tokens |
| `vatex_data.json` | `{video_id: {"enCap": [caption, ...], ...}, ...}` |

Each reader returns the good records together with a list of `SplitFileError` for the records it had
to drop (a malformed line or entry), so the caller decides whether to skip them or to raise
(`strict=True`). Problems that make the whole file unusable (no header, not json, unsafe pickle,
wrong top-level type) are raised at once.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from dataclasses import dataclass
from typing import Any

from .errors import PathLike, SplitFileError, UnsafePickleError


@dataclass(frozen=True)
class IdRecord:
    """A video id read from a split file, with its 1-based line number."""

    video_id: str
    line: int


@dataclass(frozen=True)
class CaptionRecord:
    """A (video id, caption) pair read from a file; `where` locates it (e.g. `line 3`)."""

    video_id: str
    caption: str
    where: str


def _is_valid_id(video_id: str) -> bool:
    return bool(video_id) and not any(ch.isspace() for ch in video_id)


def _open_text(path: PathLike) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as error:
        raise SplitFileError(path, f"cannot open ({error.strerror or error})") from error


def _read_text(path: PathLike) -> str:
    with _open_text(path) as handle:
        try:
            return handle.read()
        except UnicodeDecodeError as error:
            raise SplitFileError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from error


def read_id_list(path: PathLike) -> tuple[list[IdRecord], list[SplitFileError]]:
    """Reads a text file with one video id per line (MSVD and VATEX `*_list.txt`).

    Blank lines are ignored (the original files have no trailing newline, or one). A line holding
    whitespace inside the id is reported as malformed.
    """
    records, issues = [], []
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        video_id = raw.strip()
        if not video_id:
            continue
        if not _is_valid_id(video_id):
            issues.append(SplitFileError(path, f"expected one video id, got {raw!r}", line=number))
            continue
        records.append(IdRecord(video_id, number))
    return records, issues


def _csv_rows(path: PathLike, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Parses a csv file, checks its header has `required` columns, returns (header, numbered rows)."""
    text = _read_text(path)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise SplitFileError(path, f"not a valid csv file ({error})") from error
    if not rows:
        raise SplitFileError(path, "empty file (expected a csv header)", line=1)
    header = [name.strip().lstrip("\ufeff") for name in rows[0]]
    missing = [name for name in required if name not in header]
    if missing:
        raise SplitFileError(path, f"csv header {','.join(header)!r} lacks column(s) {', '.join(missing)}", line=1)
    numbered = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    return header, numbered


def read_id_csv(path: PathLike) -> tuple[list[IdRecord], list[SplitFileError]]:
    """Reads an MSR-VTT split csv (header `video_id`, one id per row)."""
    issues: list[SplitFileError] = []
    records = [IdRecord(video_id, number) for number, video_id, _ in _id_rows(path, ("video_id",), issues)]
    return records, issues


def _id_rows(path: PathLike, required: tuple[str, ...], issues: list[SplitFileError]):
    """`(line number, video id, row)` of a csv's well-formed rows with a valid id; malformed rows go to `issues`."""
    header, rows = _csv_rows(path, required)
    column = header.index("video_id")
    for number, row in rows:
        if len(row) != len(header):
            fields = f"{len(header)} field" + ("s" if len(header) > 1 else "")
            issues.append(SplitFileError(path, f"expected {fields}, got {len(row)}", line=number))
            continue
        video_id = row[column].strip()
        if not _is_valid_id(video_id):
            issues.append(SplitFileError(path, f"invalid video id {row[column]!r}", line=number))
            continue
        yield number, video_id, dict(zip(header, row))


def read_caption_csv(path: PathLike) -> tuple[list[CaptionRecord], list[SplitFileError]]:
    """Reads the MSR-VTT 1k-A test csv (header `key,vid_key,video_id,sentence`, one caption per row).

    An empty sentence is returned as an empty caption (the caller counts it as an empty caption).
    """
    issues: list[SplitFileError] = []
    records = [CaptionRecord(video_id, row["sentence"].strip(), f"line {number}")
               for number, video_id, row in _id_rows(path, ("video_id", "sentence"), issues)]
    return records, issues


def _load_json(path: PathLike) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SplitFileError(path, f"not valid json ({error.msg})", line=error.lineno) from error


def read_msrvtt_sentences(path: PathLike) -> tuple[list[CaptionRecord], list[SplitFileError]]:
    """Reads `MSRVTT_data.json`: the `sentences` list of `{"video_id": ..., "caption": ...}` objects.

    Entries are returned in file order.
    """
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise SplitFileError(path, 'expected a json object with a "sentences" list')
    records, issues = [], []
    for index, item in enumerate(data["sentences"]):
        entry = f"sentences[{index}]"
        if not isinstance(item, dict):
            issues.append(SplitFileError(path, f"expected an object, got {type(item).__name__}", entry=entry))
            continue
        video_id, caption = item.get("video_id"), item.get("caption")
        if not isinstance(video_id, str) or not _is_valid_id(video_id.strip()):
            issues.append(SplitFileError(path, f"missing or invalid video_id {video_id!r}", entry=entry))
            continue
        if not isinstance(caption, str):
            issues.append(SplitFileError(path, f"missing or non-string caption {caption!r}", entry=entry))
            continue
        records.append(CaptionRecord(video_id.strip(), caption.strip(), entry))
    return records, issues


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global at all.

    Plain containers (dict, list, tuple), strings, bytes and numbers are built by pickle opcodes
    without `find_class`; anything else (classes, functions, `set` in protocols < 4 ...) needs it and
    is refused, so unpickling cannot run code.
    """

    def __init__(self, file, path: PathLike):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise UnsafePickleError(
            self._path,
            f"refusing to load global {module}.{name}: only plain containers, strings and numbers are allowed",
        )


def load_plain_pickle(path: PathLike) -> Any:
    """Loads a pickle that may only contain plain containers, strings and numbers.

    Raises:
        UnsafePickleError: the pickle references any Python global (class, function...).
        SplitFileError: the file is not a readable pickle.
    """
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise SplitFileError(path, f"cannot open ({error.strerror or error})") from error
    with handle:
        try:
            return _PlainDataUnpickler(handle, path).load()
        except SplitFileError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            AttributeError,
        ) as error:
            raise SplitFileError(path, f"not a readable pickle ({type(error).__name__}: {error})") from error


def _join_caption(value: Any) -> str | None:
    """A caption given as a list of word tokens (or already as a string) -> a string, else None."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)) and all(isinstance(token, str) for token in value):
        return " ".join(token.strip() for token in value if token.strip())
    return None


def read_msvd_captions(path: PathLike) -> tuple[dict[str, list[CaptionRecord]], list[SplitFileError]]:
    """Reads MSVD `raw-captions.pkl`: dict video id -> list of captions, each a list of word tokens.

    Tokens are joined with single spaces, as the original loader does.
    """
    data = load_plain_pickle(path)
    if not isinstance(data, dict):
        raise SplitFileError(path, f"expected a pickled dict video id -> captions, got {type(data).__name__}")
    captions, issues = {}, []
    for video_id, items in data.items():
        entry = f"[{video_id!r}]"
        if not isinstance(video_id, str) or not isinstance(items, (list, tuple)):
            issues.append(SplitFileError(path, "expected a str key and a list of captions", entry=entry))
            continue
        records = []
        for index, item in enumerate(items):
            caption = _join_caption(item)
            if caption is None:
                issues.append(SplitFileError(path, "caption is not a list of word strings", entry=f"{entry}[{index}]"))
                continue
            records.append(CaptionRecord(video_id, caption, f"{entry}[{index}]"))
        captions[video_id] = records
    return captions, issues


def read_vatex_captions(path: PathLike) -> tuple[dict[str, list[CaptionRecord]], list[SplitFileError]]:
    """Reads `vatex_data.json`: `{video_id: {"enCap": [English caption, ...], ...}, ...}`."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise SplitFileError(path, "expected a json object video id -> annotation")
    captions, issues = {}, []
    for video_id, annotation in data.items():
        entry = f"[{video_id!r}]"
        english = annotation.get("enCap") if isinstance(annotation, dict) else None
        if not isinstance(english, list):
            issues.append(SplitFileError(path, 'expected an object with an "enCap" list', entry=entry))
            continue
        records = []
        for index, caption in enumerate(english):
            if not isinstance(caption, str):
                issues.append(SplitFileError(path, "caption is not a string", entry=f'{entry}["enCap"][{index}]'))
                continue
            records.append(CaptionRecord(video_id, caption.strip(), f'{entry}["enCap"][{index}]'))
        captions[video_id] = records
    return captions, issues
