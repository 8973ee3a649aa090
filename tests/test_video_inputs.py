"""Video inputs as `datasets` and the web hand them over (`video_inputs.resolve_video_input`), and the readers'
behaviour around fork (DataLoader workers) and with non-video bytes."""

import http.server
import subprocess
import sys
import textwrap
import threading
import time

import av
import numpy as np
import pytest

import video_inputs
import video_readers
from processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError


PYTHON = sys.executable


def write_video(path, num_frames: int = 30, size: int = 48) -> bytes:
    """h264 video of moving gradients; returns its bytes."""
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for index in range(num_frames):
            image = np.stack([xx * 4 + index * 7, yy * 5 + index * 3, (xx + yy) * 2], -1) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "clip.mp4"
    return path, write_video(path)


@pytest.fixture(scope="module")
def server(video):
    """A local web server: `/clip.mp4` the video, `/page.html` an HTML page, `/slow.mp4` answers after 3 s, anything
    else 404."""
    body = video[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow.mp4":
                time.sleep(3)
            if self.path in ("/clip.mp4", "/slow.mp4"):
                content, kind = body, "video/mp4"
            elif self.path == "/page.html":
                content, kind = b"<html><body>" + b"not a video " * 500 + b"</body></html>", "text/html"
            else:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            try:
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def processor():
    return CLIP2VideoVideoProcessor(num_frames=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def frames_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_url_gives_the_file_frames(video, server, processor):
    path, _ = video
    expected = processor.load_frames(str(path))
    assert len(expected) == 4
    assert frames_equal(processor.load_frames(f"{server}/clip.mp4"), expected)
    batch = processor(videos=[f"{server}/clip.mp4", str(path)], return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 4, 3, 32, 32)
    assert (batch["pixel_values"][0] == batch["pixel_values"][1]).all()


def test_url_errors_name_the_url_and_the_reason(server, processor, monkeypatch):
    with pytest.raises(VideoDecodeError, match=rf"^{server}/missing.mp4: HTTP 404"):
        processor.load_frames(f"{server}/missing.mp4")
    with pytest.raises(VideoDecodeError, match=rf"^{server}/page.html: cannot decode"):
        processor.load_frames(f"{server}/page.html")
    monkeypatch.setattr(video_inputs, "URL_TIMEOUT", 0.5)
    start = time.perf_counter()
    with pytest.raises(VideoDecodeError, match=rf"^{server}/slow.mp4: no answer within 0.5 s \(timed out\)"):
        video_inputs.download(f"{server}/slow.mp4", timeout=0.5)
    assert time.perf_counter() - start < 2.5
    with pytest.raises(VideoDecodeError, match=r"^http://127.0.0.1:9/x.mp4: cannot download"):
        video_inputs.download("http://127.0.0.1:9/x.mp4", timeout=2)
    with pytest.raises(VideoDecodeError, match="more than the 100 bytes"):
        video_inputs.download(f"{server}/clip.mp4", max_bytes=100)


def test_datasets_video_values(video, processor, tmp_path):
    """`datasets.Video(decode=False)` values, as a dataset hands them over (bytes, or a path), alone or in a batch."""
    import datasets

    path, data = video
    expected = processor.load_frames(str(path))
    from_path = datasets.Dataset.from_dict({"video": [str(path)]}).cast_column("video", datasets.Video(decode=False))
    from_bytes = datasets.Dataset.from_dict({"video": [{"path": None, "bytes": data}]}).cast_column(
        "video", datasets.Video(decode=False))
    for value in (from_path[0]["video"], from_bytes[0]["video"]):
        assert isinstance(value, dict) and set(value) == {"path", "bytes"}
        assert frames_equal(processor.load_frames(value), expected)
    batch = processor(videos=[from_path[0]["video"], from_bytes[0]["video"]], return_tensors="pt")
    assert (batch["pixel_values"][0] == batch["pixel_values"][1]).all()
    assert video_readers.describe(from_path[0]["video"]) == str(path)
    with pytest.raises(VideoDecodeError, match="neither bytes nor a path"):
        processor.load_frames({"path": None, "bytes": None})
    broken = {"path": str(tmp_path / "gone.mp4"), "bytes": None}
    with pytest.raises(VideoDecodeError, match=rf"{tmp_path / 'gone.mp4'}: no such file"):
        processor.load_frames(broken)


def test_datasets_decoded_video_where_torchcodec_is_present(video, processor):
    """`datasets.Video()` decodes to a torchcodec `VideoDecoder`; the processor reads the file it came from."""
    pytest.importorskip("torchcodec")
    import datasets

    path, _ = video
    dataset = datasets.Dataset.from_dict({"video": [str(path)]}).cast_column("video", datasets.Video())
    decoder = dataset[0]["video"]
    assert type(decoder).__module__.startswith("torchcodec")
    assert frames_equal(processor.load_frames(decoder), processor.load_frames(str(path)))
    assert video_readers.describe(decoder) == str(path)
    from torchcodec.decoders import VideoDecoder

    frames = video_inputs.resolve_video_input(VideoDecoder(str(path)))  # not from datasets: all its frames
    assert frames.dtype == np.uint8 and frames.shape == (30, 48, 48, 3)
    assert len(processor.load_frames(VideoDecoder(str(path)))) == 4


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
                          cwd=str(video_readers.__file__).rsplit("/", 1)[0])


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_read_in_main_process_then_in_dataloader_workers(video, backend):
    """A video decoded in the main process, then read again by a 2-worker DataLoader (fork) with the same processor:
    the workers finish (a PyAV decoder freed in a child hung it)."""
    path, _ = video
    code = f"""
        import av, torch
        from processing_clip2video import CLIP2VideoVideoProcessor
        processor = CLIP2VideoVideoProcessor(video_backend={backend!r}, num_frames=4)
        assert len(processor.load_frames({str(path)!r})) == 4

        class Videos(torch.utils.data.Dataset):
            def __len__(self):
                return 6
            def __getitem__(self, index):
                return len(processor.load_frames({str(path)!r}))

        loader = torch.utils.data.DataLoader(Videos(), num_workers=2, batch_size=2, multiprocessing_context="fork")
        print(sum(int(batch.sum()) for batch in loader))
    """
    result = run_python(code, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "24"


def test_non_video_bytes_are_not_echoed_to_stderr():
    """decord printed the whole input of a failed open to stderr (bytes included): 200 kB in, 200 kB out."""
    code = """
        import av, video_readers
        junk = b"\\x1b[31mNOT-A-VIDEO " * 20000
        try:
            video_readers.read_video(junk, "<junk>", lambda timeline, read: [0], "decord")
        except video_readers.VideoDecodeError as error:
            print("error:", error)
    """
    result = run_python(code, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("error: <junk>: cannot decode")
    assert "NOT-A-VIDEO" not in result.stderr and len(result.stderr) < 2000, result.stderr[:500]
