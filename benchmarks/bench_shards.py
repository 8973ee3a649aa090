"""Storage of prepared frame shards: bytes per clip and read speed of the candidate formats, next to the original's dump.

Candidates, each holding the same clips (the processor's 12 frames at 224 px, uint8, as `prepare_shards.py` stores
them) and read back with `datasets` (`load_dataset(..., streaming=True)`) into `(12, 224, 224, 3)` uint8 arrays:

* `parquet-npy` (the chosen format): Parquet, zstd, one `.npy` blob per clip (frame_shards.py's writer);
* `parquet-jpeg`: Parquet, one JPEG (PIL, quality 95) per frame; lossy, the error is reported;
* `webdataset-npy`: WebDataset tar, `{key}.npy` + `{key}.json` per clip (datasets decodes `.npy` itself).

The original's storage is measured too: `ffmpeg -i video -r 5 -q 0 %08d.jpg` of the same 30 s 320x240 video (the
JPEG dump its training read). Video: `bench_decode.make_video` (h264, moving noise texture: a hard case for lossless
compression; smooth real footage compresses better). Read speed is one process, one thread, from the second clip of
a stream on (datasets' stream setup is not timed).

Usage:
    python benchmarks/bench_shards.py [--clips 16] [--seconds 30]
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import make_video  # noqa: E402
from frame_shards import VideoRecord, load_prepared, model_input_frames, npy_bytes  # noqa: E402
from processing_clip2video import CLIP2VideoVideoProcessor  # noqa: E402


def original_dump_bytes(video: str, workdir: str) -> tuple[int, int]:
    """Bytes and images of the original's 5 fps JPEG dump of `video`."""
    folder = os.path.join(workdir, "dump")
    os.makedirs(folder)
    subprocess.run(["ffmpeg", "-v", "0", "-i", video, "-r", "5", "-q", "0", f"{folder}/%08d.jpg"], check=True)
    names = os.listdir(folder)
    return sum(os.path.getsize(os.path.join(folder, name)) for name in names), len(names)


def distinct_clips(video: str, count: int) -> list[np.ndarray]:
    """`count` different 12-frame clips of the video at the model input (uniform picks, shifted per clip)."""
    processor = CLIP2VideoVideoProcessor(num_frames=12 * count, frame_sampling="uniform")
    every = model_input_frames(processor, video)
    return [every[index::count][:12] for index in range(count)]


def write_parquet_npy(clips, folder: str) -> list[str]:
    """The chosen format, through frame_shards' own writer (its shard and prepared.json layout)."""
    from frame_shards import finish_split, write_split_shards

    # in-memory frames are taken as the 5 fps images: "uniform" over exactly 12 of them keeps them all
    processor = CLIP2VideoVideoProcessor(num_frames=12, frame_sampling="uniform")
    records = [VideoRecord(f"clip{index}", clip, ("a caption",)) for index, clip in enumerate(clips)]
    write_split_shards(records, folder, "train", processor, shard_size=len(clips))
    finish_split(folder, "train", len(records), len(clips), processor)
    return [os.path.join(folder, "train-00000.parquet")]


def write_parquet_jpeg(clips, folder: str, quality: int = 95) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def jpeg(frame):
        handle = io.BytesIO()
        Image.fromarray(frame).save(handle, "JPEG", quality=quality)
        return handle.getvalue()

    os.makedirs(folder)
    path = os.path.join(folder, "train-00000.parquet")
    table = pa.table({"video_id": [f"clip{i}" for i in range(len(clips))],
                      "frames": [[jpeg(frame) for frame in clip] for clip in clips]})
    pq.write_table(table, path, compression="zstd", use_dictionary=False)
    return [path]


def write_webdataset_npy(clips, folder: str) -> list[str]:
    os.makedirs(folder)
    path = os.path.join(folder, "train-00000.tar")
    with tarfile.open(path, "w") as archive:
        for index, clip in enumerate(clips):
            for extension, data in (("npy", npy_bytes(clip)), ("json", json.dumps({"caption": "a caption"}).encode())):
                info = tarfile.TarInfo(f"clip{index}.{extension}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return [path]


def read_parquet_npy(folder: str):
    for row in load_prepared(folder, "train", streaming=True):
        yield row["frames"]


def read_parquet_jpeg(folder: str):
    import datasets
    from PIL import Image

    stream = datasets.load_dataset("parquet", data_files=[os.path.join(folder, "train-00000.parquet")],
                                   split="train", streaming=True)
    for row in stream:
        yield np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in row["frames"]])


def read_webdataset_npy(folder: str):
    import datasets

    stream = datasets.load_dataset("webdataset", data_files=[os.path.join(folder, "train-00000.tar")],
                                   split="train", streaming=True)
    for row in stream:
        yield np.asarray(row["npy"], dtype=np.uint8)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    formats = {"parquet-npy": (write_parquet_npy, read_parquet_npy),
               "parquet-jpeg": (write_parquet_jpeg, read_parquet_jpeg),
               "webdataset-npy": (write_webdataset_npy, read_webdataset_npy)}
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        video = os.path.join(workdir, "video.mp4")
        make_video(video, args.seconds)
        dump_bytes, dump_images = original_dump_bytes(video, workdir)
        clips = distinct_clips(video, args.clips)
        for name, (write, read) in formats.items():
            folder = os.path.join(workdir, name)
            files = write(clips, folder)
            size = sum(os.path.getsize(path) for path in files)
            seconds, read_back = 0.0, []
            for _ in range(args.repeats):
                rows = read(folder)
                read_back = [next(rows)]  # opening the stream (datasets' setup) is not timed
                start = time.perf_counter()
                read_back += list(rows)
                seconds += time.perf_counter() - start
                assert len(read_back) == len(clips)
            error = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(read_back, clips))
            mean_error = float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(read_back, clips)]))
            results[name] = {"bytes_per_clip": round(size / len(clips)), "read_clips_per_second": round(
                args.repeats * (len(clips) - 1) / seconds, 1), "max_abs_error": error, "mean_abs_error": round(mean_error, 3)}
    uint8 = 12 * 224 * 224 * 3
    result = {"formats": results, "raw_uint8_bytes_per_clip": uint8,
              "original_jpeg_dump": {"bytes_per_clip": dump_bytes, "images": dump_images, "seconds": args.seconds,
                                     "size": "320x240"},
              "dump_vs_parquet_npy": round(dump_bytes / results["parquet-npy"]["bytes_per_clip"], 1),
              "load_average": os.getloadavg()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
