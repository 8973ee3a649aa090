"""Tests of app.py, the search web app: a tiny model indexes small generated videos; the app runs as users start it
(`python app.py INDEX` in a subprocess, or `build_app` served by uvicorn in a thread) and is driven over HTTP and in a
real headless browser (Debian's chromium through selenium and chromedriver)."""

import contextlib
import http.client
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("av")

import app  # noqa: E402
import index_engines  # noqa: E402
import index_store  # noqa: E402
import search_videos  # noqa: E402
from conftest import skip_or_fail  # noqa: E402
from test_search_videos import EVENTS, FAST, save_tiny_model, write_event_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAGE_SIZE = 4
STARTUP_S = 180


# ----------------------------------------------------------------------------------------------------------------------
# An index, a server, a browser
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> dict:
    """Six event videos (one in a subfolder) and a non-video file, indexed; a video outside the indexed folder."""
    root = tmp_path_factory.mktemp("app")
    videos = root / "videos"
    for number, event in enumerate(EVENTS):
        write_event_video(videos / ("nested" if number == 4 else "") / f"video{number}.mp4", event, seed=number)
    (videos / "notes.txt").write_text("private notes")
    write_event_video(root / "outside" / "secret.mp4", EVENTS[0], seed=9)
    model = save_tiny_model(root / "model", seed=0)
    assert search_videos.main(["index", str(videos), "--model", str(model), "--index", str(root / "index"), *FAST]) == 0
    return {"root": root, "videos": videos, "model": model, "index": root / "index"}


WINDOWS = ["--window_seconds", "0.8", "--window_stride", "1.2"]  # 2.4 s videos: windows at 0, 1.2 and 1.6 s


@pytest.fixture(scope="module")
def windowed(indexed) -> Path:
    """The videos of `indexed`, indexed in timed windows (the first two apart: one moment each)."""
    location = indexed["root"] / "windows"
    assert search_videos.main(["index", str(indexed["videos"]), "--model", str(indexed["model"]), "--index",
                               str(location), *WINDOWS, *FAST]) == 0
    return location


def needs_milvus() -> None:
    for module in ("pymilvus", "milvus_lite"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"needs {module} (pip install -e '.[milvus]')")


@pytest.fixture(scope="module")
def milvus_server(indexed) -> dict:
    """The videos of `indexed` in timed windows in a Milvus Lite file, served by `python app.py windows.db`. The file
    is written by a `search_videos.py index` subprocess: Milvus Lite serves one process per file, and the app's
    process must be the one."""
    needs_milvus()
    location = indexed["root"] / "windows.db"
    run = subprocess.run([sys.executable, str(REPO / "search_videos.py"), "index", str(indexed["videos"]), "--model",
                          str(indexed["model"]), "--index", str(location), *WINDOWS, *FAST], capture_output=True,
                         text=True, timeout=STARTUP_S, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    with app_process(location, page_size=12) as url:
        yield {"url": url, "location": location}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen | None = None, timeout: float = STARTUP_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"the app exited with status {process.returncode}:\n{process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"{url}: the app did not answer within {timeout} s")


@contextlib.contextmanager
def app_process(index: Path, page_size: int):
    """`python app.py INDEX --port P --page_size N`, as a user starts it; yields its address."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), str(index), "--port", str(port), "--page_size", str(page_size)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def server(indexed) -> str:
    """`python app.py INDEX --port P --page_size 4` over the folder index."""
    with app_process(indexed["index"], PAGE_SIZE) as url:
        yield url


@contextlib.contextmanager
def serving(application):
    """`application` served by uvicorn on a free port of 127.0.0.1 in a thread."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))  # a page left open keeps a stream open
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by selenium (skipped without it here, a failure under CI=true)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("needs selenium (pip install -e '.[test]')")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        skip_or_fail("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.implicitly_wait(0)
    yield session
    session.quit()


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_video(url: str, path: Path, k: int) -> tuple[int, dict]:
    """`curl -F video=@path URL?k=K`: a multipart upload."""
    boundary = "clip2video-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{path.name}\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}api/search?k={k}", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def cli_query(indexed, *query: str) -> dict:
    """The output of `search_videos.py query INDEX ... --json` (its `main`, in this process)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert search_videos.main(["query", str(indexed["index"]), *query, "--json"]) == 0
    return json.loads(output.getvalue())


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET of `path` exactly as written (no client-side normalisation of `..`)."""
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ----------------------------------------------------------------------------------------------------------------------
# The HTTP API
# ----------------------------------------------------------------------------------------------------------------------


def test_api_returns_the_hits_of_query_json(indexed, server):
    caption = EVENTS[0].caption
    expected = cli_query(indexed, caption, "-k", "6")
    status, got = get_json(f"{server}api/search?{urllib.parse.urlencode({'q': caption, 'k': 6})}")
    assert status == 200
    assert got.pop("ms") >= 0
    assert got == expected  # query, index, model fingerprint, and every hit's rank, path, score and record fields
    assert len(got["hits"]) == 6 and {hit["path"] for hit in got["hits"]} == {
        str(path) for path in indexed["videos"].rglob("video*.mp4")}

    # by example: an uploaded copy of an indexed video is encoded and finds that video first, as the CLI's --video
    example = indexed["videos"] / "video2.mp4"
    status, got = post_video(server, example, k=3)
    assert status == 200, got
    expected = cli_query(indexed, "--video", str(example), "-k", "3")
    assert [hit["path"] for hit in got["hits"]] == [hit["path"] for hit in expected["hits"]]
    assert got["hits"][0]["path"] == str(example)
    assert [hit["score"] for hit in got["hits"]] == pytest.approx([hit["score"] for hit in expected["hits"]],
                                                                  abs=1e-4)
    assert got["query"] == "video: video2.mp4"


@pytest.mark.parametrize("query, reason", [
    ({"q": ""}, "type a text query"), ({}, "type a text query"), ({"q": "   "}, "type a text query"),
    ({"q": "a dog", "k": 0}, "k must be an integer from 1 to 96"),
    ({"q": "a dog", "k": "ten"}, "k must be an integer from 1 to 96"),
    ({"q": "a dog", "k": 97}, "k must be an integer from 1 to 96")])
def test_api_refuses_bad_requests_with_a_reason(server, query, reason):
    status, got = get_json(f"{server}api/search?{urllib.parse.urlencode(query)}")
    assert status == 400 and got["type"] == "QueryError" and reason in got["error"]


@pytest.mark.parametrize("name, content", [("holiday.mp4", b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 4),
                                           ("empty.mp4", b"")])
def test_api_names_a_bad_upload(server, tmp_path, name, content):
    junk = tmp_path / name
    junk.write_bytes(content)
    status, got = post_video(server, junk, k=3)
    assert status == 400 and got["type"] == "VideoDecodeError" and name in got["error"]
    assert "Traceback" not in got["error"]


def test_an_example_video_that_is_gone_is_named(indexed, tmp_path):
    """An upload the page no longer has (its temporary file removed): the reason, not a traceback."""
    with pytest.raises(FileNotFoundError, match="gone.mp4: no such file"):
        app.SearchService(indexed["index"]).query(video=str(tmp_path / "gone.mp4"))


def test_videos_are_served_only_from_the_index_folder(indexed, server):
    video = indexed["videos"] / "nested" / "video4.mp4"
    status, body = raw_get(server, "/video/nested/video4.mp4")
    assert status == 200 and body == video.read_bytes()
    request = urllib.request.Request(f"{server}video/nested/video4.mp4", headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:  # players seek with range requests
        assert response.status == 206 and response.read() == video.read_bytes()[10:20]

    secret = (indexed["root"] / "index" / "manifest.json").read_bytes()
    link = indexed["videos"] / "link.mp4"  # inside the folder, but its real file is not
    link.symlink_to(indexed["root"] / "outside" / "secret.mp4")
    for path in ("/video/../index/manifest.json", "/video/%2e%2e/index/manifest.json",
                 "/video/..%2Findex%2Fmanifest.json", "/video/nested/../../index/manifest.json",
                 "/video/%2Fetc%2Fpasswd", "/video//etc/passwd", "/video/notes.txt", "/video/link.mp4",
                 "/video/missing.mp4", "/video/nested", "/video/video1.mp4%00.txt"):
        status, body = raw_get(server, path)
        assert status == 404, (path, status)
        assert secret not in body and b"private notes" not in body and b"root:" not in body
    link.unlink()


def test_missing_index_and_model_mismatch_are_errors_not_tracebacks(indexed, tmp_path):
    from fastapi.testclient import TestClient

    missing = app.SearchService(tmp_path / "no_index")
    with pytest.raises(index_store.IndexFormatError):
        missing.query(text="a dog")
    client = TestClient(app.build_app(missing))
    response = client.get("/api/search", params={"q": "a dog"})
    assert response.status_code == 503 and response.json()["type"] == "IndexFormatError"
    assert client.get("/video/video1.mp4").status_code == 404  # no index, no video folder

    other = save_tiny_model(tmp_path / "other_model", seed=1)
    client = TestClient(app.build_app(indexed["index"], model=str(other)))
    response = client.get("/api/search", params={"q": "a dog"})
    assert response.status_code == 503 and response.json()["type"] == "ModelMismatchError"
    assert "fingerprint" in response.json()["error"]


def test_hit_grid_escapes_names_and_starts_players_at_their_moment(tmp_path):
    hits = [{"rank": 1, "path": str(tmp_path / "a<b>&c.mp4"), "score": 3.5, "start": 4.0, "end": 8.5},
            {"rank": 2, "path": str(tmp_path / "sub" / "whole.mp4"), "score": 1.25}]
    grid = app.render_hits(hits, tmp_path, page=0, page_size=10, windows=True)
    assert 'src="video/a%3Cb%3E%26c.mp4#t=4.000,8.500"' in grid and "a&lt;b&gt;&amp;c.mp4" in grid
    assert "<b>&c" not in grid and "4.00–8.50 s" in grid
    assert 'src="video/sub/whole.mp4"' in grid  # no end known: no moment
    whole = app.render_hits(hits, tmp_path, page=0, page_size=10, windows=False)  # whole videos play from the start
    assert 'src="video/a%3Cb%3E%26c.mp4"' in whole and "#t=" not in whole and "c2v-time" not in whole
    assert app.render_hits(hits, tmp_path, page=1, page_size=1).count('class="c2v-hit"') == 1


# ----------------------------------------------------------------------------------------------------------------------
# The page, in a real browser
# ----------------------------------------------------------------------------------------------------------------------


def wait(browser, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda _: condition())


def page_hits(browser) -> list[dict]:
    """Rank, file name, player address, score and the player's position (once it has its metadata) of each shown
    hit."""
    return browser.execute_script("""
        return Array.from(document.querySelectorAll('#c2v-results .c2v-hit')).map(cell => {
            const video = cell.querySelector('video');
            return {rank: Number(cell.dataset.rank), path: cell.dataset.path, src: video.getAttribute('src'),
                    score: cell.querySelector('.c2v-score').innerText, ready: video.readyState,
                    time: video.currentTime};
        });""")


def status_text(browser) -> str:
    """The status line: the hit count or the error (empty while a search runs: Gradio then shows its timer)."""
    return browser.execute_script(
        "const line = document.querySelector('#c2v-status .c2v-status, #c2v-status .c2v-error');"
        "return line ? line.innerText : ''")


def search_for(browser, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.CSS_SELECTOR, "#c2v-query textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)
    before = status_text(browser)
    browser.find_element(By.CSS_SELECTOR, "#c2v-search").click()
    wait(browser, lambda: status_text(browser) not in ("", before))


def test_browser_search_plays_the_expected_video_first_and_pages(indexed, server, browser):
    from selenium.webdriver.common.by import By

    caption = EVENTS[2].caption
    expected = cli_query(indexed, caption, "-k", "6")["hits"]
    browser.get(server)
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
    assert "6 videos of" in browser.find_element(By.CSS_SELECTOR, "#c2v-index").text

    search_for(browser, caption)
    assert status_text(browser).startswith(f"Results for {caption} in ")
    wait(browser, lambda: all(hit["ready"] >= 1 for hit in page_hits(browser)))  # every player has its metadata
    shown = page_hits(browser)
    root = indexed["videos"]
    assert [hit["rank"] for hit in shown] == [1, 2, 3, 4]
    assert [hit["path"] for hit in shown] == [Path(hit["path"]).relative_to(root).as_posix() for hit in expected[:4]]
    for hit in shown:  # whole videos: each player plays its file from the start
        assert hit["src"] == "video/" + urllib.parse.quote(hit["path"]) and hit["time"] == 0
    assert browser.find_element(By.CSS_SELECTOR, "#c2v-page").text == "page 1 of 2"

    browser.find_element(By.CSS_SELECTOR, "#c2v-next").click()
    wait(browser, lambda: [hit["rank"] for hit in page_hits(browser)] == [5, 6])
    assert browser.find_element(By.CSS_SELECTOR, "#c2v-page").text == "page 2 of 2"
    browser.find_element(By.CSS_SELECTOR, "#c2v-previous").click()
    wait(browser, lambda: [hit["rank"] for hit in page_hits(browser)] == [1, 2, 3, 4])

    search_for(browser, "")  # an empty query: a line in the page, the last hits cleared
    assert status_text(browser) == "QueryError: type a text query or upload an example video"
    assert page_hits(browser) == []


def test_browser_players_start_at_their_moments_in_an_index_of_windows(indexed, windowed, browser):
    from selenium.webdriver.common.by import By

    caption = EVENTS[0].caption
    expected = cli_query({"index": windowed}, caption, "-k", "12")["hits"]
    assert len(expected) == 12 and any(hit["start"] > 0 for hit in expected)
    with serving(app.build_app(windowed, page_size=12)) as url:
        browser.get(url)
        wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
        rows = len(index_engines.open_index(str(windowed)))
        assert f"{rows} windows of" in browser.find_element(By.CSS_SELECTOR, "#c2v-index").text
        search_for(browser, caption)
        wait(browser, lambda: all(hit["ready"] >= 1 for hit in page_hits(browser)))
        shown = page_hits(browser)
        assert len(shown) == 12
        for hit, want in zip(shown, expected):
            assert hit["path"] == Path(want["path"]).relative_to(indexed["videos"]).as_posix()
            assert hit["src"] == f'video/{urllib.parse.quote(hit["path"])}#t={want["start"]:.3f},{want["end"]:.3f}'
            assert hit["time"] == pytest.approx(want["start"], abs=0.05)  # the player stands at the moment's start
        times = browser.execute_script(
            "return Array.from(document.querySelectorAll('.c2v-time')).map(line => line.innerText)")
        assert times == [f'{want["start"]:.2f}–{want["end"]:.2f} s' for want in expected]
        browser.get("about:blank")


def test_browser_search_by_uploaded_example_and_a_bad_upload(indexed, server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-video input[type=file]"))

    def upload(path: Path) -> None:
        browser.find_element(By.CSS_SELECTOR, "#c2v-video input[type=file]").send_keys(str(path))
        wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-video video"))  # the upload is in

    def clear_upload() -> None:
        browser.find_element(By.CSS_SELECTOR, "#c2v-video button[aria-label='Clear']").click()
        wait(browser, lambda: not browser.find_elements(By.CSS_SELECTOR, "#c2v-video video"))

    junk = tmp_path / "holiday.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 4)
    upload(junk)
    search_for(browser, "")
    assert status_text(browser).startswith("VideoDecodeError: ") and "holiday.mp4" in status_text(browser)
    assert "Traceback" not in browser.page_source
    clear_upload()

    example = indexed["videos"] / "video5.mp4"
    upload(example)
    search_for(browser, "")
    assert status_text(browser).startswith("Results for video: video5.mp4 in ")
    assert page_hits(browser)[0]["path"] == "video5.mp4"

    search_for(browser, "a blue circle")  # a text and a video at once: which one is meant is asked, not guessed
    assert status_text(browser).startswith("QueryError: give a text query or an example video, not both")


def test_browser_shows_index_and_model_errors_in_the_page(indexed, browser, tmp_path):
    from selenium.webdriver.common.by import By

    other = save_tiny_model(tmp_path / "other_model", seed=1)
    for application, error in ((app.build_app(tmp_path / "no_index"), "IndexFormatError: "),
                               (app.build_app(indexed["index"], model=str(other)), "ModelMismatchError: ")):
        with serving(application) as url:
            browser.get(url)
            wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
            search_for(browser, "a red square")
            assert status_text(browser).startswith(error)
            assert "Traceback" not in browser.page_source and page_hits(browser) == []
            browser.get("about:blank")


def test_browser_page_follows_an_index_built_after_the_app_started(indexed, browser, tmp_path):
    from selenium.webdriver.common.by import By

    def index_line() -> str:
        return browser.find_element(By.CSS_SELECTOR, "#c2v-index").text

    later = tmp_path / "later"
    with serving(app.build_app(later)) as url:
        browser.get(url)
        wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
        wait(browser, lambda: index_line().startswith("IndexFormatError: "))
        assert search_videos.main(["index", str(indexed["videos"]), "--model", str(indexed["model"]), "--index",
                                   str(later), *FAST]) == 0
        browser.refresh()
        wait(browser, lambda: "6 videos of" in index_line())
        search_for(browser, EVENTS[0].caption)
        assert status_text(browser).startswith(f"Results for {EVENTS[0].caption} in ")
        browser.get("about:blank")


def test_browser_names_a_video_deleted_since_indexing(indexed, browser, tmp_path):
    from selenium.webdriver.common.by import By

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("video0.mp4", "video1.mp4", "video2.mp4"):
        shutil.copy2(indexed["videos"] / name, videos / name)
    index = tmp_path / "index"
    assert search_videos.main(["index", str(videos), "--model", str(indexed["model"]), "--index", str(index),
                               *FAST]) == 0
    (videos / "video1.mp4").unlink()
    caption = EVENTS[1].caption
    with serving(app.build_app(index, page_size=PAGE_SIZE)) as url:
        status, got = get_json(f"{url}api/search?{urllib.parse.urlencode({'q': caption})}")
        assert status == 200 and got["missing"] == [str(videos / "video1.mp4")]
        assert sorted(hit["path"] for hit in got["hits"]) == [str(videos / "video0.mp4"), str(videos / "video2.mp4")]

        browser.get(url)
        wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
        search_for(browser, caption)
        assert status_text(browser).startswith(f"Results for {caption} in ")
        assert browser.find_element(By.CSS_SELECTOR, "#c2v-status .c2v-missing").text == (
            "1 video left out, deleted since the index run (run search_videos.py index again): video1.mp4")
        assert sorted(hit["path"] for hit in page_hits(browser)) == ["video0.mp4", "video2.mp4"]
        assert browser.find_element(By.CSS_SELECTOR, "#c2v-page").text == "page 1 of 1"
        assert "Traceback" not in browser.page_source
        browser.get("about:blank")


# ----------------------------------------------------------------------------------------------------------------------
# A Milvus index: `python app.py videos.db`
# ----------------------------------------------------------------------------------------------------------------------


def same_hits(got: list[dict], expected: list[dict]) -> None:
    """The same hits (rank, path, moment, record), with the same scores up to float32 rounding (another engine)."""
    assert [{**hit, "score": None} for hit in got] == [{**hit, "score": None} for hit in expected]
    assert [hit["score"] for hit in got] == pytest.approx([hit["score"] for hit in expected], abs=1e-4)


def test_api_over_a_milvus_lite_index_answers_as_the_cli_over_a_folder_index(indexed, windowed, milvus_server):
    url, caption = milvus_server["url"], EVENTS[0].caption
    answers = {}
    for name, options, cli in (("moments", {}, []), ("one per video", {"per_video": 1}, ["--per_video", "1"]),
                               ("raw windows", {"no_merge": 1}, ["--no_merge"])):
        status, got = get_json(f"{url}api/search?{urllib.parse.urlencode({'q': caption, 'k': 24, **options})}")
        assert status == 200, got
        expected = cli_query({"index": windowed}, caption, "-k", "24", *cli)  # the same videos in a folder index
        assert got["index"] == f"{milvus_server['location']} (collection videos)"
        assert got["model"] == expected["model"] and "missing" not in got
        same_hits(got["hits"], expected["hits"])
        answers[name] = got["hits"]
    # 3 windows a video (0-0.8, 1.2-2.0, 1.6-2.4 s; the last two overlap, IoU 1/3): 2 moments of each of 6 videos
    assert len(answers["moments"]) == 12 and len(answers["raw windows"]) == 18
    assert len(answers["one per video"]) == 6 == len({hit["path"] for hit in answers["one per video"]})
    status, got = get_json(f"{url}api/search?{urllib.parse.urlencode({'q': caption, 'k': 24, 'per_video': ''})}")
    assert status == 200 and got["hits"] == answers["moments"]  # an empty field is no cap, as the page's empty box

    example = indexed["videos"] / "video2.mp4"  # by example: the upload is encoded, as the CLI encodes the file
    status, got = post_video(url, example, k=3)
    assert status == 200, got
    same_hits(got["hits"], cli_query({"index": windowed}, "--video", str(example), "-k", "3")["hits"])

    # the players' files come from the video folder the Milvus index recorded, and from nowhere else
    status, body = raw_get(url, "/video/nested/video4.mp4")
    assert status == 200 and body == (indexed["videos"] / "nested" / "video4.mp4").read_bytes()
    for path in ("/video/../outside/secret.mp4", "/video/%2e%2e/outside/secret.mp4", "/video/..%2Fwindows.db%2FLOCK",
                 "/video/notes.txt", "/video/missing.mp4", "/video/%2Fetc%2Fpasswd"):
        assert raw_get(url, path)[0] == 404, path

    # the file is the app's while it runs: another process (this one) is told so, not given a traceback
    from fastapi.testclient import TestClient

    response = TestClient(app.build_app(milvus_server["location"])).get("/api/search", params={"q": caption})
    assert response.status_code == 503 and response.json()["type"] == "IndexBusyError"
    assert "another process has this Milvus Lite file open" in response.json()["error"]


def test_milvus_options_open_another_collection_and_are_refused_with_a_folder(indexed, tmp_path, capsys):
    from fastapi.testclient import TestClient

    needs_milvus()
    location = tmp_path / "clips.db"
    assert search_videos.main(["index", str(indexed["videos"]), "--model", str(indexed["model"]), "--index",
                               str(location), "--collection_name", "clips", *FAST]) == 0
    caption = EVENTS[2].caption
    expected = cli_query({"index": location}, caption, "-k", "3", "--collection_name", "clips")
    response = TestClient(app.build_app(location, index_options={"collection_name": "clips"})).get(
        "/api/search", params={"q": caption, "k": 3})
    got = response.json()
    assert response.status_code == 200 and got.pop("ms") >= 0 and got == expected
    response = TestClient(app.build_app(location)).get("/api/search", params={"q": caption})  # collection "videos"
    assert response.status_code == 503 and response.json()["type"] == "IndexFormatError"
    assert "no such collection" in response.json()["error"]

    for argv, reason in (([str(indexed["index"]), "--collection_name", "clips"], "--collection_name is an option of "
                          "a Milvus location"), ([str(location), "--milvus_search_params", "[1]"],
                                                 "--milvus_search_params must be a JSON object")):
        with pytest.raises(SystemExit) as exited:
            app.main(argv)
        assert exited.value.code == 2 and reason in capsys.readouterr().err


def cells(hits: list[dict], root: Path) -> list[tuple]:
    """What the page shows of hits of the API: rank, file name, the player's address (from its moment), score."""
    shown = []
    for hit in hits:
        name = Path(hit["path"]).relative_to(root).as_posix()
        shown.append((hit["rank"], name, f'video/{urllib.parse.quote(name)}#t={hit["start"]:.3f},{hit["end"]:.3f}',
                      f'{hit["score"]:.4f}'))
    return shown


def test_browser_moment_options_show_the_apis_hits_over_a_milvus_index(indexed, milvus_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, caption, root = milvus_server["url"], EVENTS[3].caption, indexed["videos"]

    def api(**options) -> list[dict]:
        status, got = get_json(f"{url}api/search?{urllib.parse.urlencode({'q': caption, **options})}")
        assert status == 200, got
        return got["hits"]

    def shows(hits: list[dict]) -> bool:
        return [(hit["rank"], hit["path"], hit["src"], hit["score"]) for hit in page_hits(browser)] == cells(hits, root)

    def moments_per_video(value: str) -> None:  # typed, then Enter: the page searches again
        box = browser.find_element(By.CSS_SELECTOR, "#c2v-per-video textarea, #c2v-per-video input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.BACKSPACE)
        box.send_keys(value, Keys.ENTER)

    def raw_windows() -> None:  # a click: the page searches again
        browser.find_element(By.CSS_SELECTOR, "#c2v-no-merge input[type=checkbox]").click()

    browser.get(url)
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#c2v-query textarea"))
    assert f"18 windows of {root}" in browser.find_element(By.CSS_SELECTOR, "#c2v-index").text
    search_for(browser, caption)
    moments = api(k=12)
    wait(browser, lambda: shows(moments))
    wait(browser, lambda: all(hit["ready"] >= 1 for hit in page_hits(browser)))
    assert [hit["time"] for hit in page_hits(browser)] == pytest.approx([hit["start"] for hit in moments], abs=0.05)

    raw_windows()
    windows = api(k=24, no_merge=1)
    assert len(windows) == 18 and cells(windows[:12], root) != cells(moments, root)
    wait(browser, lambda: shows(windows[:12]))
    browser.find_element(By.CSS_SELECTOR, "#c2v-next").click()  # a later page searches with the same options
    wait(browser, lambda: shows(windows[12:]))
    assert browser.find_element(By.CSS_SELECTOR, "#c2v-page").text == "page 2 of 2"

    moments_per_video("1")
    one_window_each = api(k=12, no_merge=1, per_video=1)
    assert len(one_window_each) == 6 == len({hit["path"] for hit in one_window_each})
    wait(browser, lambda: shows(one_window_each))
    raw_windows()
    one_moment_each = api(k=12, per_video=1)
    assert len(one_moment_each) == 6 == len({hit["path"] for hit in one_moment_each})
    wait(browser, lambda: shows(one_moment_each))

    moments_per_video("0")
    wait(browser, lambda: status_text(browser) == "QueryError: per_video must be an integer >= 1, got 0")
    assert page_hits(browser) == [] and "Traceback" not in browser.page_source
    moments_per_video("")  # an empty box: no cap, at the next search
    browser.find_element(By.CSS_SELECTOR, "#c2v-search").click()
    wait(browser, lambda: shows(moments))
    browser.get("about:blank")
