# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Thumbnails and HTML report pages, shared by `run_retrieval.py` (the visual report of an evaluation: each query's
top videos) and `search_videos.py --html` (a gallery of search hits).

A page is a table of `Cell`s. Every text and address that reaches a page or a terminal is untrusted (file names,
captions): `printable` makes control characters, line breaks and undecodable bytes visible as escapes, and the page
writer HTML-escapes everything it is given.

Example:
    >>> strip = thumbnail_strip(frames, height=48, count=4)          # PIL image: 4 frames side by side
    >>> rows = [[Cell("a dog runs", header=True), Cell("#1 video7 (0.31)", image=data_uri(strip), highlight=True)]]
    >>> write_page("report/index.html", render_page("MSR-VTT", rows, summary="t2v_R1 43.5"))
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from utils_clip2video import PathLike, write_text

STYLE = ("body{font-family:sans-serif} td,th{padding:4px 8px;font-size:12px;vertical-align:middle;text-align:center}"
         " th{text-align:left;max-width:260px} td.hit{background:#c8f7c5} img{image-rendering:pixelated}")


def printable(text: str) -> str:
    """`text` with every character that is not printable (control characters such as ESC, line breaks, bidi and other
    format characters, undecodable file-name bytes) written as a `\\xNN` / `\\uNNNN` escape: safe to print on a
    terminal (no escape sequence runs, a record stays on one line) and to encode as UTF-8."""
    if text.isprintable():
        return text
    escaped = []
    for char in text:
        code = ord(char)
        if char.isprintable():
            escaped.append(char)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (surrogate escape)
            escaped.append(f"\\x{code - 0xDC00:02x}")
        else:
            escaped.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(escaped)


def thumbnail_strip(frames: Sequence, height: int, count: int):
    """`count` frames spread uniformly over `frames` (arrays `(H, W, C)` or PIL images), scaled to `height` pixels and
    put side by side, 2 white pixels apart: a PIL RGB image (nearest-neighbour when enlarging, so small frames stay
    sharp; bilinear when shrinking)."""
    from PIL import Image

    if not len(frames):
        raise ValueError("no frames to make a thumbnail of")
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    images = [frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame)[..., :3])
              for frame in (frames[pick] for pick in picks)]
    images = [image.convert("RGB") for image in images]
    scale = height / images[0].height
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    images = [image.resize((max(1, round(image.width * scale)), height), resample) for image in images]
    strip = Image.new("RGB", (sum(image.width for image in images) + 2 * (len(images) - 1), height), (255, 255, 255))
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width + 2
    return strip


def data_uri(image, image_format: str = "JPEG") -> str:
    """A `data:` URI holding `image` (PIL), for a page that carries its pictures itself."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 85} if image_format == "JPEG" else {}))
    return f"data:image/{image_format.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


@dataclass
class Cell:
    """One cell of a report table.

    Attributes:
        text: the first line (a link to `link` when given).
        note: a second, smaller line.
        image: `src` of a picture shown above the text: a file next to the page or a `data_uri`.
        link: address the text links to (e.g. the video's `file:` URI).
        header: the row's heading (a `<th>`, left-aligned).
        highlight: marks the cell (e.g. the ground-truth video of a query).
        video: `src` of a video player shown above the text (a media fragment `#t=start,end` plays a span).
    """

    text: str = ""
    note: str = ""
    image: str | None = None
    link: str | None = None
    header: bool = False
    highlight: bool = False
    video: str | None = None

    def to_html(self) -> str:
        text = html.escape(printable(self.text))
        if self.link:
            text = f'<a href="{html.escape(self.link)}">{text}</a>'
        parts = [f'<video src="{html.escape(self.video)}" controls preload="metadata" width="240"></video>'] \
            if self.video else []
        parts += [f'<img src="{html.escape(self.image)}" alt="frames">'] if self.image else []
        parts += [text] if text else []
        parts += [f"<small>{html.escape(printable(self.note))}</small>"] if self.note else []
        tag = "th" if self.header else "td"
        attributes = ' class="hit"' if self.highlight else ""
        return f"<{tag}{attributes}>{'<br>'.join(parts)}</{tag}>"


def render_page(title: str, rows: Sequence[Sequence[Cell]], columns: Sequence[str] = (), summary: str = "",
                figure: str | None = None) -> str:
    """A self-contained HTML page: the title, an optional summary line and figure (`src`), then one table row per
    entry of `rows` (after a heading row of `columns`, if any)."""
    head = "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in columns) + "</tr>\n" if columns else ""
    body = "\n".join("<tr>" + "".join(cell.to_html() for cell in row) + "</tr>" for row in rows)
    title = html.escape(printable(title))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head>'
            f"<body>\n<h2>{title}</h2>\n"
            + (f"<p>{html.escape(printable(summary))}</p>\n" if summary else "")
            + (f'<img src="{html.escape(figure)}" alt="figure">\n' if figure else "")
            + f"<table>\n{head}{body}\n</table></body></html>\n")


def write_page(path: PathLike, page: str) -> None:
    """Writes a page atomically (`utils_clip2video.write_text`)."""
    write_text(path, page)
