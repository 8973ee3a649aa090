# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Thumbnails and HTML report pages, shared by `run_retrieval.py` (the visual report of an evaluation: each query's
top videos, the similarity heatmap, the loss curve: `write_retrieval_report`) and `search_videos.py --html` (a gallery
of search hits).

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
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from utils_clip2video import PathLike, write_text

#: Cells wrap long captions and file names (anywhere, if they must) and pictures shrink to their cell, so a row never
#: runs off the page.
STYLE = ("body{font-family:sans-serif;max-width:100%} table{table-layout:fixed;width:100%;border-collapse:collapse}"
         " td,th{padding:4px 8px;font-size:12px;vertical-align:middle;text-align:center;overflow-wrap:anywhere}"
         " th{text-align:left;width:22%} td.hit{background:#c8f7c5} td.miss{color:#a00}"
         " img{image-rendering:pixelated;max-width:100%;height:auto} ol{font-size:12px;columns:2}")


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
        miss: marks a cell saying what was missed (e.g. the rank of a ground truth outside the top videos).
        video: `src` of a video player shown above the text (a media fragment `#t=start,end` plays a span).
    """

    text: str = ""
    note: str = ""
    image: str | None = None
    link: str | None = None
    header: bool = False
    highlight: bool = False
    miss: bool = False
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
        attributes = ' class="hit"' if self.highlight else ' class="miss"' if self.miss else ""
        return f"<{tag}{attributes}>{'<br>'.join(parts)}</{tag}>"


def render_page(title: str, rows: Sequence[Sequence[Cell]], columns: Sequence[str] = (), summary: str = "",
                figures: Sequence[str] = (), legend: str = "") -> str:
    """A self-contained HTML page: the title, an optional summary line, figures (`src`s) and legend (HTML, escaped by
    the caller), then one table row per entry of `rows` (after a heading row of `columns`, if any)."""
    head = "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in columns) + "</tr>\n" if columns else ""
    body = "\n".join("<tr>" + "".join(cell.to_html() for cell in row) + "</tr>" for row in rows)
    title = html.escape(printable(title))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head>'
            f"<body>\n<h2>{title}</h2>\n"
            + (f"<p>{html.escape(printable(summary))}</p>\n" if summary else "")
            + "".join(f'<img src="{html.escape(figure)}" alt="figure" style="max-width:48%">\n' for figure in figures)
            + legend
            + f"<table>\n{head}{body}\n</table></body></html>\n")


def write_page(path: PathLike, page: str) -> None:
    """Writes a page atomically (`utils_clip2video.write_text`)."""
    write_text(path, page)


class ReportFolderError(ValueError):
    """A report folder that cannot be written safely (a symbolic link)."""


#: Characters of a caption or file name kept in a heatmap label (the legend under the figure has them in full).
LABEL_CHARS = 28
#: Captions and videos shown in the heatmap.
HEATMAP_SIZE = 32


def truncated(text: str, width: int = LABEL_CHARS) -> str:
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _plot_heatmap(path: Path, similarity: np.ndarray, captions: Sequence[str], videos: Sequence[str],
                  title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = similarity[:HEATMAP_SIZE, :HEATMAP_SIZE]
    rows, columns = shown.shape
    figure, axis = plt.subplots(figsize=(4 + 0.22 * columns, 2.5 + 0.2 * rows))
    image = axis.imshow(shown, cmap="viridis", aspect="auto")
    axis.set_yticks(range(rows), [f"{row + 1}. {truncated(captions[row])}" for row in range(rows)], fontsize=7)
    axis.set_xticks(range(columns), [f"{truncated(videos[column], 16)} [{column + 1}]" for column in range(columns)],
                    fontsize=7, rotation=90)
    axis.set_xlabel("video"), axis.set_ylabel("caption"), axis.set_title(f"{title}: cosine similarity")
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_loss(path: Path, log_history: Sequence[dict], title: str) -> bool:
    """The logged training loss against the optimizer step; False (nothing written) without a logged loss."""
    points = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(*zip(*points), marker="." if len(points) < 50 else None)
    axis.set_xlabel("optimizer step"), axis.set_ylabel("loss"), axis.set_title(f"{title}: training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_retrieval_report(folder: PathLike, similarity: np.ndarray, targets: Sequence[int], captions: Sequence[str],
                           videos: Sequence[str], load_frames: Callable[[int], Sequence], title: str,
                           num_queries: int, summary: str = "", log_history: Sequence[dict] = ()) -> Path:
    """`folder/index.html`: each of the first `num_queries` captions with its top-5 videos (thumbnails, the ground
    truth in green; when it is not among them, its rank), the caption x video heatmap (`similarity.png`, labelled;
    the legend lists the labels in full) and the training loss curve (`loss.png`, from `log_history`).

    `similarity` is `(captions, videos)`, `targets[i]` the column of caption i's video, `captions` / `videos` the
    row / column names, `load_frames(column)` the frames of a column's video (for its thumbnail; a `ValueError` or
    `OSError`, such as a `VideoDecodeError`, leaves the cell without a picture). Thumbnails are made afresh for this
    report (named by column and video), never taken from an earlier report in the same folder.
    """
    folder = Path(folder)
    thumbnails = folder / "thumbnails"
    for path in (folder, thumbnails):
        if path.is_symlink():
            raise ReportFolderError(f"{path} is a symbolic link: the report replaces its own files in this folder, "
                                    "never through a link; remove the link or use another output folder")
    thumbnails.mkdir(parents=True, exist_ok=True)
    for stale in thumbnails.glob("*.png"):  # an earlier report's (`<column>.png`): other videos had these names
        if stale.stem.isdigit() and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    _plot_heatmap(folder / "similarity.png", similarity, captions, videos, title)
    figures = ["similarity.png"] + (["loss.png"] if _plot_loss(folder / "loss.png", log_history, title) else [])
    made: dict[int, str | None] = {}

    def thumbnail(column: int) -> str | None:
        if column not in made:
            name = f"{column}.png"
            try:
                thumbnail_strip(load_frames(column), height=48, count=4).save(thumbnails / name)
                made[column] = f"thumbnails/{name}"
            except (ValueError, OSError):
                made[column] = None
        return made[column]

    rows = []
    for query in range(min(num_queries, similarity.shape[0])):
        scores, target = similarity[query], int(targets[query])
        top = np.argsort(-scores, kind="stable")[:5]
        cells = [Cell(captions[query], header=True)]
        for rank, column in enumerate(top):
            cells.append(Cell(f"#{rank + 1} {videos[column]} ({scores[column]:.3f})", image=thumbnail(int(column)),
                              highlight=bool(column == target)))
        if target not in top:
            rank = 1 + int((scores > scores[target]).sum())
            cells.append(Cell(f"ground truth #{rank}: {videos[target]} ({scores[target]:.3f})",
                              image=thumbnail(target), miss=True))
        rows.append(cells)
    shown = min(HEATMAP_SIZE, similarity.shape[0]), min(HEATMAP_SIZE, similarity.shape[1])
    legend = ("<details><summary>heatmap labels</summary><p>captions</p><ol>"
              + "".join(f"<li>{html.escape(printable(captions[row]))}</li>" for row in range(shown[0]))
              + "</ol><p>videos</p><ol>"
              + "".join(f"<li>{html.escape(printable(videos[column]))}</li>" for column in range(shown[1]))
              + "</ol></details>\n")
    note = "green = ground truth; a red cell gives its rank when it is not in the top 5."
    write_page(folder / "index.html", render_page(title, rows, summary=f"{summary}; {note}" if summary else note,
                                                  figures=figures, legend=legend))
    return folder
