"""prepare_shards.py under `accelerate launch`, recording which shards each process wrote in `.rank-<rank>.json`
(test_frame_shards.py checks that the processes shared the work)."""

import json
import sys
from pathlib import Path

import prepare_shards


real = prepare_shards.write_split_shards


def write_split_shards(records, output_dir, split, *args, rank=0, world_size=1, **kwargs):
    written = real(records, output_dir, split, *args, rank=rank, world_size=world_size, **kwargs)
    record = {"rank": rank, "shards": written, "world_size": world_size}
    (Path(output_dir) / f".rank-{rank}.json").write_text(json.dumps(record))
    return written


prepare_shards.write_split_shards = write_split_shards
prepare_shards.main(sys.argv[1:])
