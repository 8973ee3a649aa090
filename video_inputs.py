# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Video inputs as `datasets` and the web hand them over, turned into what the readers take (`video_readers`).

`resolve_video_input` is the one place the video processor hands any input to before decoding: `datasets.Video(
decode=False)` dicts, `datasets.Video()` (torchcodec) values and http(s) URLs (downloaded into memory, with a
timeout and a size cap); anything else passes through unchanged.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from typing import Any

try:  # loaded as Hub remote code (a package) ...
    from .video_readers import VideoDecodeError, datasets_value, describe, first_line
except ImportError:  # ... or as a top-level module of the installed project
    from video_readers import VideoDecodeError, datasets_value, describe, first_line


#: Seconds without an answer before a URL download gives up (connecting, or between two reads).
URL_TIMEOUT = 30.0
#: Largest video body a URL download keeps in memory.
MAX_URL_BYTES = 2 << 30


def is_url(value: Any) -> bool:
    """Whether `value` is an http(s) URL string."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in ("http", "https") and "://" in value


def download(url: str, timeout: float = URL_TIMEOUT, max_bytes: int = MAX_URL_BYTES) -> bytes:
    """The body of an http(s) URL, for decoding from memory.

    Raises:
        `VideoDecodeError` naming the URL and the reason: an HTTP error status (404, ...), no answer within
        `timeout` seconds, a connection failure, an empty body or one over `max_bytes`.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "clip2video"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise VideoDecodeError(f"{url}: {int(declared)} bytes, more than the {max_bytes} bytes a download keeps")
            body = response.read(max_bytes + 1)
    except VideoDecodeError:
        raise
    except urllib.error.HTTPError as error:
        raise VideoDecodeError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (OSError, ValueError) as error:  # URLError, a timeout, a connection reset mid-body, a malformed URL
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise VideoDecodeError(f"{url}: no answer within {timeout:g} s (timed out)") from None
        reason = first_line(reason) if isinstance(reason, BaseException) else reason
        raise VideoDecodeError(f"{url}: cannot download ({reason})") from None
    if len(body) > max_bytes or not body:
        raise VideoDecodeError(f"{url}: " + (f"more than the {max_bytes} bytes a download keeps" if body else "empty body"))
    return body


def resolve_video_input(video: Any, timeout: float = URL_TIMEOUT) -> Any:
    """What the readers take (a path, bytes or frames) from what `datasets` and the web hand over.

    * a `datasets.Video(decode=False)` value `{"path": ..., "bytes": ...}`: its bytes when it has them, else its
      path (which may be a URL);
    * a `datasets.Video()` value (a torchcodec `VideoDecoder`): the file or bytes it was opened from (datasets keeps
      them), so frames are chosen from the file's own timeline as for any file; a decoder made elsewhere gives all
      its frames, `(T, H, W, 3)` uint8;
    * an http(s) URL: the downloaded body (see `download`);
    * anything else is returned as it is.

    Raises:
        `VideoDecodeError` naming the input: a dict with neither path nor bytes, a failed download.
    """
    encoded = datasets_value(video)
    if encoded is not None:
        data, path = encoded.get("bytes"), encoded.get("path")
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data):
            return bytes(data)
        if isinstance(path, (str, os.PathLike)) and os.fspath(path):
            return resolve_video_input(os.fspath(path), timeout)
        raise VideoDecodeError(f"{describe(video)}: a datasets video value with neither bytes nor a path")
    if type(video).__module__.startswith("torchcodec"):
        try:
            frames = video[:]  # (T, C, H, W) uint8
            frames = getattr(frames, "data", frames)
            return frames.permute(0, 2, 3, 1).contiguous().numpy()
        except Exception as error:  # the decoder's own failure, in the readers' terms
            raise VideoDecodeError(f"{describe(video)}: torchcodec cannot decode it ({first_line(error)})") from None
    if is_url(video):
        return download(video, timeout)
    return video


__all__ = ["MAX_URL_BYTES", "URL_TIMEOUT", "download", "is_url", "resolve_video_input"]
