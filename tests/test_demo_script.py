"""`python demo.py` (the README's quick start): every figure it prints is checked against the model it describes."""

import os
import re
import subprocess
import sys

import torch

import demo
from conftest import REPO_ROOT


def test_demo_prints_what_the_model_computes():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "demo.py")], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).strip().splitlines()

    model = demo.build_model()  # the same seed: the same random weights as the subprocess
    config = model.config
    size = sum(p.numel() for p in model.parameters()) / 1e6
    assert lines[0] == (f"CLIP2Video with {size:.2f} M parameters (TDB {config.use_tdb}, TAB {config.use_tab}, "
                        f"{config.num_frames} frames)")
    assert config.use_tdb and config.use_tab  # the demo shows the full model

    match = re.fullmatch(r"retrieval features: text \((\d+), (\d+)\), video \((\d+), (\d+)\); "
                         r"\|index - forward\| = (\S+)", lines[1])
    assert match, lines[1]
    dim = config.retrieval_embed_dim
    assert [int(value) for value in match.groups()[:4]] == [len(demo.CAPTIONS), dim, 2, dim]
    assert float(match.group(5)) <= 1e-6  # the claim "exactly the model's similarity"

    inputs = demo.demo_inputs()
    assert inputs["video_mask"].tolist() == [[1] * 8, [1] * 6 + [0] * 2]
    assert inputs["pixel_values"][1, 6:].abs().sum() == 0  # padded frames are zeros
    with torch.no_grad():
        logits = model(**inputs).logits_per_text
    assert lines[2] == "similarity (captions x videos, random weights):"
    printed = lines[3:]
    assert len(printed) == len(demo.CAPTIONS)
    for caption, line, row in zip(demo.CAPTIONS, printed, logits.tolist()):
        assert line.startswith(f"  {caption}")
        values = [float(value) for value in line[2 + 40 :].split()]
        assert len(values) == 2 and all(abs(a - b) <= 5.1e-4 for a, b in zip(values, row)), (line, row)  # 3 decimals
    assert len({tuple(row) for row in logits.tolist()}) == len(demo.CAPTIONS)  # not a constant matrix
