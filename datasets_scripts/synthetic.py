"""`synthetic-motion`: a deterministic benchmark of tiny videos that can only be matched in temporal order.

Each video shows coloured shapes on a black background doing one *event*; its caption names the
event, and the time-reversed event always has a different caption:

| kind | caption | caption of the reversed video |
|---|---|---|
| move | "a red square moves from left to right" | "... from right to left" (4 axes incl. diagonals) |
| size | "a blue circle grows" | "a blue circle shrinks" |
| presence | "an orange cross appears" | "an orange cross disappears" |
| recolour | "a green diamond turns yellow" | "a yellow diamond turns green" |
| sequence | "a blue circle appears, then a green triangle" | "a green triangle appears, then a blue circle" |

**Order-invariant cap.** The test split is made of twin pairs: rows `2k` and `2k + 1` are one
rendering and its exact frame reversal (the videos are encoded losslessly, so the decoded frames of
the twin are exactly the reversed decoded frames), and every test caption is unique. A model whose
video embedding ignores frame order (mean pooling, any set function of the frames) gives both twins
the same embedding, hence the same score against every caption:

* text -> video: a caption's video and its twin tie; with any tie-break that does not look at the
  query (index order, random, or the original's "count every equal position"), at most one of the
  pair's two captions ranks its video first -> **R@1 <= 50%** (50% in expectation under random
  tie-breaks, even for an otherwise perfect model);
* video -> text: the two twins are the same query, and only one of the two captions can come first
  -> **R@1 <= 50%**.

The cap is exact when the model sees all frames, or a subset of frames symmetric in time (e.g. the
default 12 frames with `max_frames=12`). A temporal model can reach 100%.

Training videos are random events in twin pairs too: row `2k + 1` is row `2k` played backwards with the reversed
caption, so a sampler that keeps pairs in one batch (`run_retrieval.py --train_group_size 2`) gives every video its
time-reversed twin as a hard negative.
Generation is deterministic for a given configuration and seed: every video has its own random
stream `numpy.random.default_rng([seed, split, index])`, independent of process scheduling.
Videos are cached on disk, keyed by a hash of the generation parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Bumped whenever rendering or encoding changes, so old caches are not reused.
GENERATOR_VERSION = 4

#: Best text<->video R@1 (%) of any frame-order-invariant model on the test split (see module doc).
ORDER_INVARIANT_R1_CAP = 50.0

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 80, 255),
    "yellow": (245, 225, 20),
    "orange": (255, 140, 0),
    "purple": (150, 50, 220),
    "white": (240, 240, 240),
    "cyan": (20, 215, 225),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "diamond", "cross")
#: Shape radius as a fraction of the frame size, drawn once per video (every event but "size"): about 9 px in the
#: default run's 40-px frames, so a shape covers parts of 2 x 2 to 3 x 3 of its 10-px patches. The range is narrow on
#: purpose: see `_shape_mask` for why shapes of one video size differ in area.
SHAPE_RADIUS: tuple[float, float] = (0.225, 0.235)
#: "size" events: radius ranges of the small and the large end (the object grows from one to the other or shrinks).
SIZE_EVENT_RADII: tuple[tuple[float, float], tuple[float, float]] = ((0.08, 0.11), (0.30, 0.34))
#: Motion axes: (start, end) positions; the reversed motion swaps them.
MOTION_AXES: tuple[tuple[str, str], ...] = (
    ("left", "right"),
    ("top", "bottom"),
    ("top left", "bottom right"),
    ("top right", "bottom left"),
)
EVENT_KINDS: tuple[str, ...] = ("move", "size", "presence", "recolour", "sequence")
SPLITS: tuple[str, ...] = ("train", "test")
#: Square frame sizes (even, 16-256) whose frames decord 0.6.0 fails to return, whatever the codec
#: (measured: `get_batch` raises "Check failed: from_size == to_size"); refused by the config.
DECORD_UNREADABLE_SIZES: tuple[int, ...] = (16, 24, 48, 72)
_SPLIT_CODES = {"train": 1, "test": 2}

# Position names -> (x, y) in [0, 1] units, where 0 is the left/top edge.
_ANCHORS = {
    "left": (0.0, None),
    "right": (1.0, None),
    "top": (None, 0.0),
    "bottom": (None, 1.0),
    "top left": (0.0, 0.0),
    "top right": (1.0, 0.0),
    "bottom left": (0.0, 1.0),
    "bottom right": (1.0, 1.0),
}


# ----------------------------------------------------------------------------------------------
# Events and captions
# ----------------------------------------------------------------------------------------------


def _noun(colour: str, shape: str) -> str:
    """ "a red square", "an orange circle"."""
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"


@dataclass(frozen=True)
class Event:
    """What happens in one video.

    `kind` is one of `EVENT_KINDS`; `args` depends on it:
    move (colour, shape, start, end); size (colour, shape, "grows"|"shrinks");
    presence (colour, shape, "appears"|"disappears"); recolour (colour_from, shape, colour_to);
    sequence (colour_1, shape_1, colour_2, shape_2).
    """

    kind: str
    args: tuple[str, ...]

    @property
    def caption(self) -> str:
        a = self.args
        if self.kind == "move":
            return f"{_noun(a[0], a[1])} moves from {a[2]} to {a[3]}"
        if self.kind in ("size", "presence"):
            return f"{_noun(a[0], a[1])} {a[2]}"
        if self.kind == "recolour":
            return f"{_noun(a[0], a[1])} turns {a[2]}"
        if self.kind == "sequence":
            return f"{_noun(a[0], a[1])} appears, then {_noun(a[2], a[3])}"
        raise ValueError(f"unknown event kind {self.kind!r}")

    def reversed(self) -> "Event":
        """The event seen when the video plays backwards."""
        a = self.args
        if self.kind == "move":
            return Event("move", (a[0], a[1], a[3], a[2]))
        if self.kind == "size":
            return Event("size", (a[0], a[1], "shrinks" if a[2] == "grows" else "grows"))
        if self.kind == "presence":
            return Event("presence", (a[0], a[1], "disappears" if a[2] == "appears" else "appears"))
        if self.kind == "recolour":
            return Event("recolour", (a[2], a[1], a[0]))
        if self.kind == "sequence":
            return Event("sequence", (a[2], a[3], a[0], a[1]))
        raise ValueError(f"unknown event kind {self.kind!r}")


def _objects() -> list[tuple[str, str]]:
    return [(colour, shape) for colour in COLOURS for shape in SHAPES]


def event_pairs(kind: str) -> list[tuple[Event, Event]]:
    """Every (event, reversed event) pair of one kind, each unordered pair once, in a fixed order."""
    colours = list(COLOURS)
    if kind == "move":
        return [
            (Event("move", (c, s, a, b)), Event("move", (c, s, b, a))) for c, s in _objects() for a, b in MOTION_AXES
        ]
    if kind == "size":
        return [(Event("size", (c, s, "grows")), Event("size", (c, s, "shrinks"))) for c, s in _objects()]
    if kind == "presence":
        return [(Event("presence", (c, s, "appears")), Event("presence", (c, s, "disappears"))) for c, s in _objects()]
    if kind == "recolour":
        return [
            (Event("recolour", (c1, s, c2)), Event("recolour", (c2, s, c1)))
            for s in SHAPES
            for i, c1 in enumerate(colours)
            for c2 in colours[i + 1 :]
        ]
    if kind == "sequence":
        objects = _objects()
        return [
            (Event("sequence", objects[i] + objects[j]), Event("sequence", objects[j] + objects[i]))
            for i in range(len(objects))
            for j in range(i + 1, len(objects))
        ]
    raise ValueError(f"unknown event kind {kind!r}; choose one of {EVENT_KINDS}")


def all_captions() -> list[str]:
    """Every caption the generator can produce, in a fixed order."""
    return [event.caption for kind in EVENT_KINDS for pair in event_pairs(kind) for event in pair]


def synthetic_vocabulary() -> dict[str, list[str]]:
    """The words of `synthetic-motion` captions, so a small model's tokenizer can cover them.

    Returns:
        dict with `colours`, `shapes`, `positions`, `verbs` and `words` (every distinct word of every
        possible caption, sorted; punctuation: the only one is the comma after "appears").
    """
    words = sorted({word.strip(",") for caption in all_captions() for word in caption.split()})
    return {
        "colours": list(COLOURS),
        "shapes": list(SHAPES),
        "positions": sorted(_ANCHORS),
        "verbs": ["moves", "grows", "shrinks", "appears", "disappears", "turns"],
        "articles": ["a", "an"],
        "words": words,
    }


def max_test_size() -> int:
    """Largest test split with unique captions (twice the number of distinct event pairs)."""
    return 2 * sum(len(event_pairs(kind)) for kind in EVENT_KINDS)


def _sample_event(rng: np.random.Generator) -> Event:
    kind = EVENT_KINDS[rng.integers(len(EVENT_KINDS))]
    pairs = event_pairs(kind)
    pair = pairs[rng.integers(len(pairs))]
    return pair[rng.integers(2)]


def _allocate(num_pairs: int, capacities: Sequence[int]) -> list[int]:
    """Spreads `num_pairs` over kinds as evenly as their capacities allow (water filling)."""
    counts = [0] * len(capacities)
    remaining = num_pairs
    while remaining > 0:
        open_kinds = [k for k, cap in enumerate(capacities) if counts[k] < cap]
        if not open_kinds:
            raise ValueError("not enough distinct events")
        share = max(1, remaining // len(open_kinds))
        for k in open_kinds:
            take = min(share, capacities[k] - counts[k], remaining)
            counts[k] += take
            remaining -= take
            if remaining == 0:
                break
    return counts


def _test_events(seed: int, num_pairs: int) -> list[Event]:
    """The forward event of each test pair: distinct pairs, kinds balanced, order shuffled."""
    rng = np.random.default_rng([seed, _SPLIT_CODES["test"], 0])
    all_pairs = [event_pairs(kind) for kind in EVENT_KINDS]
    counts = _allocate(num_pairs, [len(pairs) for pairs in all_pairs])
    chosen = []
    for pairs, count in zip(all_pairs, counts):
        for position in rng.choice(len(pairs), size=count, replace=False):
            chosen.append(pairs[position][rng.integers(2)])
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a shape centred at (cx, cy) pixels with the given radius.

    At one radius r the five shapes have areas spaced by at least 1.27x (square 4 r^2, circle 3.14 r^2, diamond 2 r^2,
    triangle 1.42 r^2, cross 0.97 r^2), well beyond the 1.09x area spread of `SHAPE_RADIUS`. Measured on the default
    run: a model trained from scratch first tells shapes apart by how many pixels they cover, and with areas that
    overlapped (square 2.89 r^2 vs circle 3.14 r^2; triangle, diamond, cross 1.8-2.2 r^2, radius spread 1.5x) it only
    learned two groups, {square, circle} and {triangle, diamond, cross}: its text embeddings of captions differing by a
    shape within a group had cosine 0.98-1.00, and nearly every search miss was such a pair.
    """
    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = coords[None, :] - cx
    dy = coords[:, None] - cy
    if shape == "square":  # the circle's bounding square
        return np.maximum(np.abs(dx), np.abs(dy)) <= radius
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "triangle":  # apex up at -0.9 r, base at +0.7 r
        return (dy >= -0.9 * radius) & (dy <= 0.7 * radius) & (np.abs(dx) <= (dy + 0.9 * radius) / 1.8)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "cross":  # thin arms: 2 r long, 0.25 r wide
        arm = radius / 8.0
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def _draw(frame: np.ndarray, shape: str, colour: str, cx: float, cy: float, radius: float) -> None:
    frame[_shape_mask(shape, cx, cy, radius, frame.shape[0])] = COLOURS[colour]


def _random_point(rng: np.random.Generator, size: int, margin: float) -> tuple[float, float]:
    return tuple(rng.uniform(margin, size - margin, size=2))  # type: ignore[return-value]


def _anchor_point(rng: np.random.Generator, name: str, size: int, margin: float) -> tuple[float, float]:
    """A point near the named edge/corner; free coordinates are random."""
    low, high = margin, size - margin
    span = high - low
    point = []
    for anchor in _ANCHORS[name]:
        if anchor is None:
            point.append(rng.uniform(low, high))
        else:  # within the outer 15% of the free span on that side
            offset = rng.uniform(0.0, 0.15) * span
            point.append(low + offset if anchor == 0.0 else high - offset)
    return point[0], point[1]


def render_event(event: Event, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Renders `event` into a (num_frames, size, size, 3) uint8 RGB array; geometry drawn from `rng`."""
    frames = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    radius = rng.uniform(*SHAPE_RADIUS) * size
    margin = radius + 1.0
    times = np.linspace(0.0, 1.0, num_frames)
    # frame where a switch happens (presence, recolour, sequence): somewhere in the middle half
    switch = int(rng.integers(max(1, num_frames // 4), max(2, num_frames - num_frames // 4)))
    a = event.args
    if event.kind == "move":
        x0, y0 = _anchor_point(rng, a[2], size, margin)
        x1, y1 = _anchor_point(rng, a[3], size, margin)
        for t, frame in zip(times, frames):
            _draw(frame, a[1], a[0], x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, radius)
    elif event.kind == "size":
        cx, cy = _random_point(rng, size, 0.3 * size)
        small, large = rng.uniform(*SIZE_EVENT_RADII[0]) * size, rng.uniform(*SIZE_EVENT_RADII[1]) * size
        r0, r1 = (small, large) if a[2] == "grows" else (large, small)
        for t, frame in zip(times, frames):
            _draw(frame, a[1], a[0], cx, cy, r0 + (r1 - r0) * t)
    elif event.kind == "presence":
        cx, cy = _random_point(rng, size, margin)
        visible = range(switch, num_frames) if a[2] == "appears" else range(0, switch)
        for index in visible:
            _draw(frames[index], a[1], a[0], cx, cy, radius)
    elif event.kind == "recolour":
        cx, cy = _random_point(rng, size, margin)
        for index, frame in enumerate(frames):
            _draw(frame, a[1], a[0] if index < switch else a[2], cx, cy, radius)
    elif event.kind == "sequence":
        first = _random_point(rng, size, margin)
        second = _random_point(rng, size, margin)
        for _ in range(100):  # keep the two objects apart, so a sequence never looks like a recolour
            if np.hypot(second[0] - first[0], second[1] - first[1]) >= 0.35 * size:
                break
            second = _random_point(rng, size, margin)
        for index, frame in enumerate(frames):
            if index < switch:
                _draw(frame, a[1], a[0], *first, radius)
            else:
                _draw(frame, a[3], a[2], *second, radius)
    else:
        raise ValueError(f"unknown event kind {event.kind!r}")
    return frames


def encode_video(frames: np.ndarray, path: str, fps: int) -> None:
    """Writes RGB frames as a losslessly coded h264 (yuv420p, qp 0) mp4, atomically.

    Lossless coding makes the decoded frames a per-frame function of the input frames, so a
    frame-reversed video decodes to exactly the reversed frames. Single-threaded for bit-exact output.
    """
    import av

    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(suffix=".mp4", dir=directory)
    os.close(handle)
    try:
        with av.open(temporary, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast"})
            stream.codec_context.thread_count = 1
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode(None))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def decode_video(path: str) -> np.ndarray:
    """Decodes every frame of a video file into a (frames, height, width, 3) uint8 RGB array."""
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


# ----------------------------------------------------------------------------------------------
# Configuration, generation and cache
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticMotionConfig:
    """Generation parameters of `synthetic-motion` (all of them key the on-disk cache).

    Args:
        seed (`int`, defaults to 0): random seed; same seed -> identical videos and captions.
        train_size (`int`, defaults to 2000): number of training videos.
        test_size (`int`, defaults to 500): number of test videos; even (twin pairs), at most
            `max_test_size()` so every test caption is unique.
        num_frames (`int`, defaults to 12): frames per video (8-24 recommended; 12 = CLIP2Video's
            `max_frames`, so the model sees every frame and the order-invariant cap is exact).
        frame_size (`int`, defaults to 32): width = height in pixels, even, 18-256, not one of
            `DECORD_UNREADABLE_SIZES` (16, 24, 48, 72: decord 0.6 cannot read those widths).
        fps (`int`, defaults to 5): frame rate written in the file (the original samples videos at 5 fps).

    Example:
        >>> config = SyntheticMotionConfig(seed=1, train_size=100, test_size=50)
    """

    seed: int = 0
    train_size: int = 2000
    test_size: int = 500
    num_frames: int = 12
    frame_size: int = 32
    fps: int = 5

    def __post_init__(self):
        for name in ("seed", "train_size", "test_size", "num_frames", "frame_size", "fps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"SyntheticMotionConfig.{name} must be an int, got {value!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.train_size < 0:
            raise ValueError(f"train_size must be >= 0, got {self.train_size}")
        if self.test_size < 0 or self.test_size % 2:
            raise ValueError(f"test_size must be even and >= 0 (twin pairs), got {self.test_size}")
        if self.test_size > max_test_size():
            raise ValueError(f"test_size {self.test_size} exceeds {max_test_size()} (unique captions)")
        if not 4 <= self.num_frames <= 64:
            raise ValueError(f"num_frames must be in [4, 64], got {self.num_frames}")
        if not 16 <= self.frame_size <= 256 or self.frame_size % 2:
            raise ValueError(f"frame_size must be even and in [16, 256] (yuv420p), got {self.frame_size}")
        if self.frame_size in DECORD_UNREADABLE_SIZES:
            raise ValueError(
                f"frame_size {self.frame_size} is one of {DECORD_UNREADABLE_SIZES}, widths whose frames decord 0.6 "
                "cannot read (size mismatch in get_batch); pick e.g. 32, 40, 56 or 64"
            )
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be in [1, 60], got {self.fps}")

    def split_size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"synthetic-motion has splits {SPLITS}, not {split!r}")
        return self.train_size if split == "train" else self.test_size

    def fingerprint(self) -> str:
        """Hash of the parameters and the generator version: the cache key."""
        payload = json.dumps({**dataclasses.asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]


def video_id(split: str, index: int) -> str:
    return f"motion-{split}-{index:05d}"


def _render_train_video(config: SyntheticMotionConfig, index: int) -> tuple[str, np.ndarray]:
    """Training rows come in twin pairs too: row `2k + 1` is row `2k` reversed in time, with the reversed caption, so a
    sampler that keeps pairs together gives every video its time-reversed twin as a hard negative."""
    rng = np.random.default_rng([config.seed, _SPLIT_CODES["train"], 1, index // 2])
    event = _sample_event(rng)
    frames = render_event(event, config.num_frames, config.frame_size, rng)
    if index % 2:
        return event.reversed().caption, frames[::-1]
    return event.caption, frames


def _render_test_pair(config: SyntheticMotionConfig, pair: int, event: Event) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng([config.seed, _SPLIT_CODES["test"], 1, pair])
    frames = render_event(event, config.num_frames, config.frame_size, rng)
    return [(event.caption, frames), (event.reversed().caption, frames[::-1])]


def _generate_chunk(config: SyntheticMotionConfig, split: str, units: list[int], folder: str) -> list[tuple[int, str]]:
    """Renders and writes one chunk of videos; returns (row, caption) for each. Runs in a worker."""
    results = []
    if split == "train":
        for index in units:
            caption, frames = _render_train_video(config, index)
            encode_video(frames, os.path.join(folder, video_id(split, index) + ".mp4"), config.fps)
            results.append((index, caption))
    else:
        events = _test_events(config.seed, config.test_size // 2)
        for pair in units:
            for offset, (caption, frames) in enumerate(_render_test_pair(config, pair, events[pair])):
                row = 2 * pair + offset
                encode_video(frames, os.path.join(folder, video_id(split, row) + ".mp4"), config.fps)
                results.append((row, caption))
    return results


def default_cache_root() -> str:
    """`$CLIP2VIDEO_CACHE`, else `$HF_DATASETS_CACHE`'s clip2video folder."""
    if os.environ.get("CLIP2VIDEO_CACHE"):
        return os.environ["CLIP2VIDEO_CACHE"]
    import datasets

    return os.path.join(str(datasets.config.HF_DATASETS_CACHE), "clip2video")


def split_folder(config: SyntheticMotionConfig, split: str, root: Optional[str] = None) -> str:
    """Where the videos of one split live: `<root>/synthetic-motion/<fingerprint>/<split>`."""
    return os.path.join(root or default_cache_root(), "synthetic-motion", config.fingerprint(), split)


def _read_cached_rows(folder: str, expected: int) -> Optional[list[dict]]:
    """Rows from a complete cached split, or None if absent/incomplete."""
    index_path = os.path.join(folder, "captions.jsonl")
    if not os.path.isfile(index_path):
        return None
    with open(index_path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if len(rows) != expected:
        return None
    for row in rows:
        row["video"] = os.path.join(folder, row["video_id"] + ".mp4")
        if not os.path.isfile(row["video"]):
            return None
    return rows


def _write_index(folder: str, rows: list[dict], config: SyntheticMotionConfig) -> None:
    """Writes `config.json` and, last and atomically, `captions.jsonl` (which marks the split complete)."""
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump({**dataclasses.asdict(config), "version": GENERATOR_VERSION}, handle, indent=2)
    # a private temporary name: processes generating the same split at once (e.g. one per rank) do not clash
    descriptor, temporary = tempfile.mkstemp(suffix=".jsonl", dir=folder)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for row in rows:
            entry = {key: row[key] for key in ("video_id", "caption", "video_index")}
            handle.write(json.dumps(entry) + "\n")
    os.replace(temporary, os.path.join(folder, "captions.jsonl"))


def generate_split(
    config: SyntheticMotionConfig,
    split: str,
    root: Optional[str] = None,
    num_proc: Optional[int] = None,
) -> list[dict]:
    """Generates (or reuses from the cache) one split; returns its rows in the common schema.

    Args:
        config: generation parameters.
        split: `"train"` or `"test"`.
        root: cache root folder (default `default_cache_root()`).
        num_proc: worker processes (default 1: one process makes the default 2,000 + 500 videos in
            about 11 s on one core, so extra processes rarely pay off). Workers are spawned, so a
            script that sets `num_proc > 1` needs the usual `if __name__ == "__main__":` guard.

    Returns:
        list of `{video_id, video, caption, video_index}`, one per video (one caption each).
    """
    size = config.split_size(split)
    folder = split_folder(config, split, root)
    cached = _read_cached_rows(folder, size)
    if cached is not None:
        logger.info("synthetic-motion/%s: reusing %d cached videos in %s", split, size, folder)
        return cached
    os.makedirs(folder, exist_ok=True)
    units = list(range(size if split == "train" else size // 2))
    num_proc = num_proc or 1
    start = time.perf_counter()
    if num_proc <= 1 or len(units) <= 1:
        results = _generate_chunk(config, split, units, folder)
    else:
        import multiprocessing

        chunks = [units[i :: num_proc * 4] for i in range(num_proc * 4)]
        chunks = [chunk for chunk in chunks if chunk]
        with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = pool.map(_generate_chunk, *zip(*[(config, split, chunk, folder) for chunk in chunks]))
            results = [item for part in parts for item in part]
    results.sort()
    rows = [
        {
            "video_id": video_id(split, row),
            "video": os.path.join(folder, video_id(split, row) + ".mp4"),
            "caption": caption,
            "video_index": row,
        }
        for row, caption in results
    ]
    _write_index(folder, rows, config)
    logger.info(
        "synthetic-motion/%s: generated %d videos in %.1f s (%d process(es)) into %s",
        split,
        size,
        time.perf_counter() - start,
        num_proc,
        folder,
    )
    return rows


def list_video_ids(split: str, config: Optional[SyntheticMotionConfig] = None) -> list[str]:
    """Video ids of a synthetic split (no generation needed)."""
    config = config or SyntheticMotionConfig()
    return [video_id(split, index) for index in range(config.split_size(split))]
