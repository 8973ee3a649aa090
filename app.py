# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""A search web app over a video index (`search_videos.py index`): a Gradio page and an HTTP API, one model load.

    python app.py INDEX [--model MODEL] [--host 127.0.0.1] [--port 7860] [--page_size 12] [--max_results 48]
    python app.py videos.db [--collection_name videos] [--db_name DB] [--token USER:PASSWORD]     # a Milvus index

The page has a text box and an example-video upload; the hits come as a grid of inline players (each starts at its
moment, `#t=start,end`, when the index stores timed windows), with rank, score and file name, `--page_size` per page;
"moments per video" and "raw windows" are the query's `--per_video` and `--no_merge`. The same search answers over
HTTP with the JSON of `search_videos.py query --json`:

    curl 'http://127.0.0.1:7860/api/search?q=a+red+square+moves&k=5'          # [&per_video=N][&no_merge=1]
    curl -F video=@clip.mp4 'http://127.0.0.1:7860/api/search?k=5'

The model and the index (any location `search_videos.py` takes: a folder, a Milvus Lite file or server) are opened once
and kept; a folder index rebuilt meanwhile is followed by the index itself. Errors (an empty
query, a file that is not a video, a missing index, a model that is not the index's) are a line in the page or a JSON
`{"error": ..., "type": ...}` with status 400 (the request) or 503 (the index or model), never a traceback. Hits whose
files were deleted since the index run are left out, and named (the page's status line, the JSON's `missing`).

Video files are served from `/video/<path relative to the indexed folder>` only: a file with a video extension whose
real path (symlinks resolved) lies inside the index's video folder; anything else is a 404.

As a Hugging Face Space (`sdk: gradio`, `app_file: app.py`; see docs/app.md), the index location and the model come
from the environment: `CLIP2VIDEO_INDEX` (default `index`) and `CLIP2VIDEO_MODEL` (default: the index's own).
"""

import argparse
import dataclasses
import html
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import search_videos
from datasets_scripts import VIDEO_EXTENSIONS
from index_engines import open_index
from index_store import Hit, IndexStore, VideoIndexError
from loading_clip2video import LoadedModel, load_model
from report_clip2video import printable
from utils_clip2video import ModelSourceError, int_at_least


logger = logging.getLogger("app")

INDEX_ENV = "CLIP2VIDEO_INDEX"
MODEL_ENV = "CLIP2VIDEO_MODEL"
#: Errors that a request or the index's state cause; they are shown as one line (anything else is logged and shown
#: as an internal error). ValueError covers VideoDecodeError and ModelLoadError; OSError covers ModelSourceError and
#: missing files.
USER_ERRORS = (VideoIndexError, ValueError, OSError)
MAX_UPLOAD = "500mb"
#: Hits the page pages through (and the API's largest `k`). The page searches for one page of hits first and again,
#: for more, when a later page needs them: each hit's record is read, so a search for 48 hits costs more than one for
#: 12 (`benchmarks/bench_app.py` measures both).
MAX_RESULTS = 96


class QueryError(ValueError):
    """A request the app cannot answer as it is (no query, both a text and a video, a bad `k`)."""


class NotServedError(FileNotFoundError):
    """A video path that the app does not serve (outside the indexed folder, not a video, not a file)."""


# ----------------------------------------------------------------------------------------------------------------------
# The adapter: the one place that calls search_videos' search API
# ----------------------------------------------------------------------------------------------------------------------


def run_search(store: IndexStore, model: LoadedModel, text: str | None, video: str | None, k: int,
               per_video: int | None = None, merge: bool = True, missing: set[str] | None = None) -> list[Hit]:
    """The top `k` hits (moments, with timed windows) of an opened index for a caption or an example video (exactly
    one), best first: `search_videos.search`, as `search_videos.py query` runs it. Hits whose files were deleted since
    the index run are left out, their paths added to `missing`.

    Raises:
        ModelMismatchError: `model` is not the model that built the index (checked on every query: the index may have
            been rebuilt meanwhile).
        VideoDecodeError, FileNotFoundError: a bad example video.
    """
    return search_videos.search(store, text=text, video=video, k=k, per_video=per_video, merge=merge, model=model,
                                missing=missing)


# ----------------------------------------------------------------------------------------------------------------------
# The service: index and model opened once, shared by the page and the HTTP API
# ----------------------------------------------------------------------------------------------------------------------


class SearchService:
    """The index and its model, opened on first use and kept; `query` answers both the page and the API.

    An index that cannot be opened yet (missing, not an index) or a model that cannot be loaded is not fatal: each
    query tries again and reports the reason, so the app can start before its index exists (a Space whose index is
    built later).

    Args:
        index: the index location (a folder, a Milvus Lite file or server: anything `open_index` takes).
        model: a model folder or Hub id, an already loaded model, or None for the model recorded in the index.
        max_results: hits fetched per query (the page pages through them; the API's `k` may not exceed it).
        trust_remote_code: run the model folder's own code (as `search_videos.py --trust_remote_code`).
        index_options: keyword arguments of `open_index` (a Milvus location's `collection_name`, `db_name`, `token`,
            `search_params`).
    """

    def __init__(self, index: str | os.PathLike, model: str | LoadedModel | None = None,
                 max_results: int = MAX_RESULTS, trust_remote_code: bool = False, index_options: dict | None = None):
        self.location = os.fspath(index)
        self.index_options = dict(index_options or {})
        self.max_results = max_results
        self.trust_remote_code = trust_remote_code
        self._model_source = model
        self._store: IndexStore | None = None
        self._model: LoadedModel | None = model if isinstance(model, LoadedModel) else None
        self._lock = threading.Lock()  # one query at a time: the index's caches and the model are shared

    def open(self) -> tuple[IndexStore, LoadedModel]:
        """The opened index and the loaded model (opened and loaded on the first call that succeeds)."""
        if self._store is None:
            self._store = open_index(self.location, **self.index_options)
        if self._model is None:
            recorded = self._store.meta["model"]
            source = self._model_source or recorded["name_or_path"]
            logger.info("loading model %s", source)
            self._model = load_model(source, bf16=recorded.get("bf16", False),
                                     trust_remote_code=self.trust_remote_code)
        return self._store, self._model

    @property
    def video_root(self) -> Path | None:
        return Path(self._store.meta["video_dir"]) if self._store is not None else None

    @property
    def rows(self) -> int:
        """Rows of the index (videos, or windows), 0 before it is open."""
        return len(self._store) if self._store is not None else 0

    @property
    def windows(self) -> bool:
        """Whether the index stores timed windows (its hits are moments)."""
        return self._store is not None and self._store.meta.get("window_seconds") is not None

    def describe(self) -> str:
        """One line about the index (or why it is not available)."""
        try:
            with self._lock:
                index, model = self.open()
            rows = f"{len(index):,} windows" if self.windows else f"{len(index):,} videos"
            return f"{rows} of {printable(str(self.video_root))}, model {printable(model.name_or_path)}"
        except USER_ERRORS as error:
            return f"{type(error).__name__}: {error}"

    def query(self, text: str | None = None, video: str | None = None, k: int | None = None,
              per_video: int | None = None, merge: bool = True) -> dict:
        """The hits of a caption or an example video as `search_videos.py query --json` prints them (with `-k`,
        `--per_video`, `--no_merge` for `merge=False`), plus the server time in `ms` (the model's encoding of the query
        included) and, when hits were left out because their files were deleted since the index run, their paths in
        `missing`.

        Raises:
            QueryError: no query, both a text and a video, `k` out of `1..max_results`, `per_video` below 1.
            VideoIndexError, OSError, ValueError: the index or model cannot be used, a bad video (the reason named).
        """
        text = text.strip() if isinstance(text, str) else None
        text = text or None
        video = video or None
        if text is None and video is None:
            raise QueryError("type a text query or upload an example video")
        if text is not None and video is not None:
            raise QueryError("give a text query or an example video, not both (clear one of them)")
        k = self.max_results if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_results:
            raise QueryError(f"k must be an integer from 1 to {self.max_results}, got {k!r}")
        if per_video is not None and (isinstance(per_video, bool) or not isinstance(per_video, int) or per_video < 1):
            raise QueryError(f"per_video must be an integer >= 1, got {per_video!r}")
        start, missing = time.perf_counter(), set()
        with self._lock:
            store, model = self.open()
            hits = run_search(store, model, text, video, k, per_video, merge, missing)
        result = {"query": text if text is not None else f"video: {Path(video).name}", "index": store.location,
                  "model": model.fingerprint,
                  "hits": [hit.to_dict(rank) for rank, hit in enumerate(hits, 1)],
                  "ms": round((time.perf_counter() - start) * 1000, 2)}
        if missing:
            result["missing"] = sorted(missing)
        return result

    def video_file(self, relative: str) -> Path:
        """The file to serve for `/video/<relative>`.

        Raises:
            NotServedError: not a video file whose real path is inside the index's video folder.
        """
        root = self.video_root
        if root is None or not relative or "\x00" in relative:
            raise NotServedError(f"{relative!r}: not served")
        real_root = Path(os.path.realpath(root))
        path = Path(os.path.realpath(real_root / relative))
        if (not path.is_relative_to(real_root) or path.suffix.lower() not in VIDEO_EXTENSIONS
                or not path.is_file()):
            raise NotServedError(f"{relative!r}: not a video of the index's folder")
        return path


# ----------------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------------


CSS = """
.c2v-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px}
.c2v-hit {border: 1px solid #ddd; border-radius: 6px; padding: 6px; overflow: hidden}
.c2v-hit video {width: 100%; aspect-ratio: 16 / 9; background: #000}
.c2v-meta {font-size: 13px; display: flex; gap: 8px; flex-wrap: wrap; align-items: baseline}
.c2v-name {font-weight: 600; overflow-wrap: anywhere}
.c2v-error {color: #b00020; font-weight: 600}
.c2v-missing {color: #8a5a00}
"""


def video_url(relative: str, start: float | None = None, end: float | None = None) -> str:
    """Address of a video of the index's folder (relative to the page), starting at a moment when given
    (`#t=start,end`)."""
    url = "video/" + quote(relative)
    if start is not None and end is not None:
        url += f"#t={float(start):.3f},{float(end):.3f}"
    return url


def relative_name(path: str, root: Path | None) -> str:
    """A hit's path relative to the index's video folder, with forward slashes (its name without a folder)."""
    return Path(os.path.relpath(path, root)).as_posix() if root else Path(path).name


def render_hits(hits: list[dict], root: Path | None, page: int, page_size: int, windows: bool = False) -> str:
    """The grid of one page of hits (`query()["hits"]`): a player, rank, score and file name each; with timed
    `windows`, each player starts at its moment, whose times are shown."""
    if not hits:
        return '<p class="c2v-empty">no videos in the index</p>'
    cells = []
    for hit in hits[page * page_size: (page + 1) * page_size]:
        relative = relative_name(hit["path"], root)
        start, end = (hit.get("start"), hit.get("end")) if windows else (None, None)
        moment = "" if end is None else f'<span class="c2v-time">{start:.2f}–{end:.2f} s</span>'
        name = html.escape(printable(relative))
        cells.append(
            f'<div class="c2v-hit" data-rank="{hit["rank"]}" data-path="{name}">'
            f'<video controls muted preload="metadata" src="{html.escape(video_url(relative, start, end))}"></video>'
            f'<div class="c2v-meta"><span class="c2v-rank">#{hit["rank"]}</span>'
            f'<span class="c2v-score">{hit["score"]:.4f}</span><span class="c2v-name" title="{name}">{name}</span>'
            f"{moment}</div></div>")
    return f'<div class="c2v-grid">{"".join(cells)}</div>'


def error_line(error: Exception) -> str:
    return f'<p class="c2v-error">{html.escape(type(error).__name__)}: {html.escape(printable(str(error)))}</p>'


def missing_line(missing: list[str], root: Path | None, shown: int = 5) -> str:
    """The line naming the indexed files a query's hits left out because they were deleted since the index run."""
    if not missing:
        return ""
    names = ", ".join(html.escape(printable(relative_name(path, root))) for path in missing[:shown])
    more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
    files = "1 video" if len(missing) == 1 else f"{len(missing)} videos"
    return (f'<p class="c2v-missing">{files} left out, deleted since the index run (run '
            f"<code>search_videos.py index</code> again): {names}{more}</p>")


def build_page(service: SearchService, page_size: int = 12):
    """The Gradio page: query inputs, the moment options, a status line, the grid of players and the pager."""
    import gradio as gr

    def fetch(state: dict, page: int) -> tuple[dict, int]:
        """The state with the hits page `page` shows (searched for one page first, and again, for more hits, when a
        later page needs them), and the page clamped to the hits there are."""
        fetched = state["result"]["hits"] if state["result"] else None
        need = min((max(page, 0) + 1) * page_size, service.max_results)
        if fetched is None or (len(fetched) < need and len(fetched) == state["k"]):
            result = service.query(text=state["text"], video=state["video"], k=need, per_video=state["per_video"],
                                   merge=state["merge"])
            state = {**state, "result": result, "k": need}
        pages = max(1, -(-len(state["result"]["hits"]) // page_size))
        return state, min(max(page, 0), pages - 1)

    def pages_label(state: dict, page: int) -> str:
        found, asked = len(state["result"]["hits"]), state["k"]
        if found < asked or asked >= service.max_results:  # every hit there is has been fetched
            total = found
        elif not service.windows:  # one hit per video
            total = min(service.rows - len(state["result"].get("missing", ())), service.max_results)
        else:
            return f"page {page + 1}"
        return f"page {page + 1} of {max(1, -(-total // page_size))}"

    def show(state: dict, page: int):
        """Status line, grid, page label, state and page of page `page` of the state's query; errors as one line."""
        try:
            state, page = fetch(state, page)
        except USER_ERRORS as error:
            return error_line(error), "", "", None, 0
        except Exception as error:  # noqa: BLE001 - the page shows one line, the log keeps the traceback
            logger.exception("query failed")
            return error_line(RuntimeError(f"internal error ({type(error).__name__}; see the server log)")), "", \
                "", None, 0
        result = state["result"]
        status = (f'<p class="c2v-status">Results for <b>{html.escape(printable(result["query"]))}</b> in '
                  f'{result["ms"]:.0f} ms</p>' + missing_line(result.get("missing", []), service.video_root))
        grid = render_hits(result["hits"], service.video_root, page, page_size, service.windows)
        return status, grid, pages_label(state, page), state, page

    def search(text: str | None, video: str | None, per_video: str | None, raw: bool):
        """The first page of a new query (`per_video`: the moments-per-video box, read as the API reads its field,
        empty for no limit; `raw`: the raw-windows box, `--no_merge`)."""
        return show({"text": text, "video": video, "per_video": count(per_video),
                     "merge": not raw, "result": None, "k": 0}, 0)

    def search_again(state: dict | None, *inputs):
        """A changed moment option searches again, when the page shows hits (before, it waits for a query)."""
        if state is None:
            return gr.skip(), gr.skip(), gr.skip(), None, 0
        return search(*inputs)

    def turn(state: dict | None, page: int, step: int):
        if state is None:  # no query yet, or the last one failed
            return gr.skip(), gr.skip(), gr.skip(), None, 0
        return show(state, page + step)

    with gr.Blocks(title="clip2video search", analytics_enabled=False) as page:
        gr.Markdown("## Search videos by text or by example")
        index_line = gr.Markdown(service.describe(), elem_id="c2v-index")
        with gr.Row():
            text = gr.Textbox(label="Text query", placeholder="a red square moves from left to right", scale=3,
                              elem_id="c2v-query")
            video = gr.Video(label="…or an example video", sources=["upload"], include_audio=True, scale=2,
                             elem_id="c2v-video")
        with gr.Row():
            # a text box: Gradio's number box sends 0 when it is empty, and empty is "no limit" (as for the API)
            per_video = gr.Textbox(label="Moments per video", placeholder="no limit", max_lines=1,
                                   elem_id="c2v-per-video",
                                   info="index of timed windows: at most this many moments of one video")
            raw = gr.Checkbox(label="Raw windows", value=False, elem_id="c2v-no-merge",
                              info="index of timed windows: each window with its own score, not merged into moments")
        button = gr.Button("Search", variant="primary", elem_id="c2v-search")
        status = gr.HTML(elem_id="c2v-status")
        grid = gr.HTML(elem_id="c2v-results")
        with gr.Row():
            previous = gr.Button("◀ previous", size="sm", elem_id="c2v-previous")
            label = gr.Markdown("", elem_id="c2v-page")
            following = gr.Button("next ▶", size="sm", elem_id="c2v-next")
        state, current = gr.State(None), gr.State(0)
        inputs, outputs = [text, video, per_video, raw], [status, grid, label, state, current]
        for event in (button.click, text.submit):
            event(search, inputs, outputs, api_visibility="private")
        for event in (raw.input, per_video.submit):
            event(search_again, [state, *inputs], outputs, api_visibility="private")
        previous.click(lambda r, p: turn(r, p, -1), [state, current], outputs, api_visibility="private")
        following.click(lambda r, p: turn(r, p, 1), [state, current], outputs, api_visibility="private")
        # an index built since the app started: a reload of the page shows it
        page.load(service.describe, None, index_line, api_visibility="private", show_progress="hidden")
    return page


# ----------------------------------------------------------------------------------------------------------------------
# The HTTP app: the API, the video files, the page
# ----------------------------------------------------------------------------------------------------------------------


def build_app(index: str | os.PathLike | SearchService, model: str | LoadedModel | None = None, page_size: int = 12,
              max_results: int = MAX_RESULTS, trust_remote_code: bool = False, index_options: dict | None = None):
    """The FastAPI app serving `/api/search`, `/video/<path>` and the Gradio page at `/` (run it with uvicorn, or
    `main`); the arguments are `SearchService`'s.

    Example:
        >>> import uvicorn
        >>> uvicorn.run(build_app("my_index"), host="127.0.0.1", port=7860)
    """
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    service = index if isinstance(index, SearchService) else SearchService(index, model, max_results,
                                                                            trust_remote_code, index_options)
    app = FastAPI(title="clip2video search", docs_url=None, redoc_url=None)

    def answer(fields, video: str | None) -> JSONResponse:
        """The JSON answer to the request's fields `q`, `k`, `per_video`, `no_merge` (strings, as sent)."""
        try:
            hits = service.query(text=fields.get("q"), video=video, k=count(fields.get("k")),
                                 per_video=count(fields.get("per_video")),
                                 merge=fields.get("no_merge", "").lower() not in ("1", "true", "yes"))
            return JSONResponse(hits)
        except USER_ERRORS as error:
            status = 503 if isinstance(error, (VideoIndexError, ModelSourceError)) else 400
            return JSONResponse({"error": str(error), "type": type(error).__name__}, status_code=status)

    @app.get("/api/search")
    def search_get(request: Request) -> JSONResponse:
        """`?q=caption&k=10[&per_video=N][&no_merge=1]`: the hits as `search_videos.py query --json` prints them."""
        return answer(request.query_params, None)

    @app.post("/api/search")
    async def search_post(request: Request) -> JSONResponse:
        """A multipart form with `video` (an example video file); the other fields in the form or the query."""
        form = await request.form()
        fields = {**request.query_params, **{name: value for name, value in form.items() if isinstance(value, str)}}
        upload = form.get("video")
        if upload is None or isinstance(upload, str):
            return await run_in_threadpool(answer, fields, None)
        name = Path(upload.filename or "").name  # the client's file name, without any folder it names
        with tempfile.TemporaryDirectory(prefix="clip2video-upload-") as folder:
            path = Path(folder) / (name if name.lower().endswith(VIDEO_EXTENSIONS) else "upload.mp4")
            path.write_bytes(await upload.read())
            return await run_in_threadpool(answer, fields, str(path))

    @app.get("/video/{relative:path}")
    def video_get(relative: str):
        try:
            return FileResponse(service.video_file(relative))
        except NotServedError as error:
            return JSONResponse({"error": str(error), "type": type(error).__name__}, status_code=404)

    return gr.mount_gradio_app(app, build_page(service, page_size), path="/", css=CSS, ssr_mode=False,
                               max_file_size=MAX_UPLOAD, footer_links=[], theme=page_theme())


def count(text: str | None) -> int | str | None:
    """A request's integer field: its value, None when absent or empty (its default: `per_video=` is no limit, as
    the page's empty box), or the text as sent when it is not an integer (the error quotes it)."""
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        return text


def page_theme():
    """Gradio's default look with the system's fonts (the default theme fetches web fonts: none offline)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    positive = int_at_least(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", nargs="?", default=os.environ.get(INDEX_ENV, "index"),
                        help=f"Index location made by `search_videos.py index` (default: ${INDEX_ENV} or ./index).")
    parser.add_argument("--model", default=os.environ.get(MODEL_ENV) or None,
                        help=f"Model to encode queries (default: ${MODEL_ENV} or the one recorded in the index); "
                             "refused if it is not the index's model.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="Address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1; 0.0.0.0 for all).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="Port (default: $GRADIO_SERVER_PORT or 7860).")
    parser.add_argument("--page_size", type=positive, default=12, help="Players per page.")
    parser.add_argument("--max_results", type=positive, default=MAX_RESULTS,
                        help="Hits fetched per query (the pages) and the API's largest k.")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="Run the model folder's own code (off: an index handed over by someone else runs nothing "
                             "of theirs).")
    helps = {option.name: option.metadata["help"] for option in dataclasses.fields(search_videos.MilvusArguments)}
    for name in search_videos.MilvusArguments.MILVUS_ONLY:  # the options of `search_videos.py query`
        parser.add_argument(f"--{name}", default=None, help=helps[name])
    return parser


def index_options(args: argparse.Namespace) -> dict:
    """`open_index`'s keyword arguments from the Milvus options (none for a folder index).

    Raises:
        ValueError: a Milvus option with a folder index, or `--milvus_search_params` that is not a JSON object.
    """
    names = search_videos.MilvusArguments.MILVUS_ONLY
    return search_videos.MilvusArguments(**{name: getattr(args, name) for name in names}).open_options(args.index)


def main(argv: Sequence[str] | None = None) -> int:
    """Starts the server (`python app.py INDEX ...`); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = index_options(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    import uvicorn

    service = SearchService(args.index, args.model, args.max_results, args.trust_remote_code, options)
    logger.info("%s", service.describe())  # loads the model now, not at the first query
    app = build_app(service, page_size=args.page_size)
    logger.info("serving on http://%s:%d", args.host, args.port)
    # an open page keeps a stream open: stop waiting for it 5 s after Ctrl-C / SIGTERM
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
