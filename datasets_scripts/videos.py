"""Finding a benchmark's videos in the user's `video_dir`.

A video is matched by its id: a file `<video_id>.<ext>` with a common video extension, or a folder
`<video_id>/` of extracted frames (the original code's layout, e.g. `00000001.jpg`, ...). Only the top
level of `video_dir` is searched: point `video_dir` at the folder that holds the files (for the
public MSR-VTT zip that is `MSRVTT/videos/all`).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from .errors import PathLike

logger = logging.getLogger(__name__)

#: Extensions tried for a video file, in order of preference when an id has several files.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".3gp", ".flv", ".wmv", ".ts",
                    ".ogv")
#: Extensions that make a folder count as a frame folder.
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _is_frame_folder(path: str) -> bool:
    """True if `path` is a folder holding at least one image file."""
    try:
        with os.scandir(path) as entries:
            return any(entry.is_file() and entry.name.lower().endswith(FRAME_EXTENSIONS) for entry in entries)
    except OSError:
        return False


def index_video_dir(video_dir: PathLike, wanted: Optional[set[str]] = None) -> dict[str, str]:
    """Maps video id -> path for every video file or frame folder at the top level of `video_dir`.

    Args:
        video_dir: folder with the videos.
        wanted: if given, only these ids are indexed (frame folders of other ids are not opened).

    Returns:
        dict video id -> path (a file, or a frame folder if the id has no video file).
    """
    video_dir = os.fspath(video_dir)
    if not os.path.isdir(video_dir):
        raise NotADirectoryError(f"{video_dir}: video_dir is not a folder")
    rank = {extension: position for position, extension in enumerate(VIDEO_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    with os.scandir(video_dir) as entries:
        for entry in entries:
            stem, extension = os.path.splitext(entry.name)
            extension = extension.lower()
            if extension in rank and entry.is_file():
                video_id, priority = stem, rank[extension]
            elif entry.is_dir():
                video_id, priority = entry.name, len(VIDEO_EXTENSIONS)
            else:
                continue
            if wanted is not None and video_id not in wanted:
                continue
            if video_id in best and best[video_id][0] <= priority:
                continue
            if priority == len(VIDEO_EXTENSIONS) and not _is_frame_folder(entry.path):
                continue
            best[video_id] = (priority, entry.path)
    return {video_id: path for video_id, (_, path) in best.items()}


def video_dir_fingerprint(video_dir: Optional[PathLike]) -> str:
    """A cheap fingerprint of the top level of `video_dir` (names and sizes), for cache keys."""
    if video_dir is None:
        return "none"
    import hashlib

    digest = hashlib.sha1(os.path.abspath(os.fspath(video_dir)).encode())
    try:
        with os.scandir(video_dir) as entries:
            for name, size in sorted((entry.name, entry.stat().st_size) for entry in entries):
                digest.update(f"{name}\0{size}\n".encode())
    except OSError:
        digest.update(b"unreadable")
    return digest.hexdigest()[:16]
