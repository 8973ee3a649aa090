"""The training recipe of `run_retrieval.py`, checked by value from outside the script (see `script_runs.RunRecorder`):
gradient accumulation, frozen towers, the two learning-rate groups with warm-up + cosine, gradient clipping, bf16 and
gradient checkpointing, starting from a CLIP checkpoint, epoch checkpoints, resuming from a checkpoint folder, the tie
rule, `$CLIP2VIDEO_CACHE`, and (slow) the default job's claims with `--compare_mean_pooling`."""

import json
import shutil

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from conftest import REPO_ROOT
from modeling_clip2video import CLIP2VideoModel
from script_runs import (  # noqa: F401  (synthetic_cache is a fixture)
    TEXT_TOWER_PREFIXES,
    VISION_TOWER_PREFIXES,
    RunRecorder,
    cosine_with_warmup,
    group_lr,
    is_clip,
    logged,
    saved_weights,
    synthetic_cache,
    tiny_args,
)


def _changed(before: dict, after: dict, prefixes) -> dict[str, bool]:
    return {name: not torch.equal(before[name], after[name]) for name in before if name.startswith(prefixes)}


# ----------------------------------------------------------------------------------------------------------------------
# Learning rates: two groups, warm-up + cosine, one scheduler step per optimizer step
# ----------------------------------------------------------------------------------------------------------------------


def test_two_learning_rate_groups_follow_warmup_then_cosine_per_optimizer_step(tmp_path, synthetic_cache):
    new_lr, clip_lr, steps, warmup = 1e-3, 2e-4, 8, 2
    recorder = RunRecorder()
    results = recorder.main(tiny_args(
        tmp_path / "run", synthetic_cache, "--do_train", "--learning_rate", str(new_lr), "--clip_learning_rate",
        str(clip_lr), "--warmup_ratio", str(warmup / steps), "--max_train_steps", str(steps),
        "--gradient_accumulation_steps", "2", "--weight_decay", "0.1"))
    run = recorder.run
    assert results["CLIP2Video"]["completed_steps"] == steps
    assert len(run["steps"]) == steps and len(run["forwards"]) == 2 * steps  # 2 micro-batches per optimizer step

    # The groups split the trainable parameters into CLIP (towers, projections, logit scale) and new modules.
    model = run["model"]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    groups = run["steps"][0]["groups"]
    assert sorted(n for g in groups for n in g["names"]) == sorted(trainable)  # each parameter in exactly one group
    clip_names = {n for g in groups if all(is_clip(n) for n in g["names"]) for n in g["names"]}
    new_names = {n for g in groups if not any(is_clip(n) for n in g["names"]) for n in g["names"]}
    assert clip_names == {n for n in trainable if is_clip(n)} and new_names == trainable - clip_names
    assert "logit_scale" in clip_names and any(n.startswith("temporal_transformer.") for n in new_names)
    # No weight decay on biases, norms, embeddings and the scale; decay on the matrices.
    shapes = dict(model.named_parameters())
    for group in groups:
        for name in group["names"]:
            if shapes[name].ndim < 2 or name == "logit_scale":
                assert group["weight_decay"] == 0.0, name
    assert any(g["weight_decay"] == 0.1 for g in groups)

    # The learning rate each optimizer step used: base * (linear warm-up from 0 over 2 steps, then cosine to 0).
    for index, record in enumerate(run["steps"]):
        factor = cosine_with_warmup(index, warmup, steps)
        for clip, base in ((True, clip_lr), (False, new_lr)):
            rates = group_lr(record, clip)
            assert rates, "a group for each part"
            for lr, initial in rates:
                assert initial == pytest.approx(base, rel=1e-12)
                assert lr == pytest.approx(base * factor, rel=1e-9, abs=1e-15), (index, clip)
    assert group_lr(run["steps"][0], True)[0][0] == 0.0  # warm-up starts at 0
    assert group_lr(run["steps"][warmup], False)[0][0] == pytest.approx(new_lr)  # the peak right after warm-up


# ----------------------------------------------------------------------------------------------------------------------
# Gradient accumulation: --train_batch_size counts it; one step = AdamW on the mean of the micro-batch losses
# ----------------------------------------------------------------------------------------------------------------------


def test_gradient_accumulation_steps_on_the_mean_of_micro_batch_losses(tmp_path, synthetic_cache):
    lr, steps = 1e-2, 2
    recorder = RunRecorder(record_inputs=True)
    # adam_epsilon 1 makes the update depend on the gradient's scale (with a tiny eps AdamW is scale-invariant), so a
    # missing division by the accumulation steps shows in the weights.
    results = recorder.main(tiny_args(
        tmp_path / "run", synthetic_cache, "--do_train", "--train_batch_size", "8", "--gradient_accumulation_steps",
        "2", "--max_train_steps", str(steps), "--warmup_ratio", "0", "--weight_decay", "0", "--adam_epsilon", "1.0",
        "--learning_rate", str(lr), "--clip_learning_rate", str(lr)))
    run = recorder.run
    assert results["CLIP2Video"]["completed_steps"] == steps and len(run["steps"]) == steps
    forwards = run["forwards"]
    assert len(forwards) == 2 * steps  # a global batch of 8 = 2 micro-batches of 4
    assert all(f["inputs"]["input_ids"].shape[0] == 4 and f["inputs"]["pixel_values"].shape[0] == 4 for f in forwards)
    rows = torch.cat([f["inputs"]["input_ids"] for f in forwards])
    assert len({tuple(r.tolist()) for r in rows}) >= 15  # 16 rows: distinct pairs, not one micro-batch repeated

    # The reference: the same initial weights, AdamW stepped on (loss(micro 1) + loss(micro 2)) / 2.
    reference = CLIP2VideoModel(CLIP2VideoModel.config_class.from_pretrained(tmp_path / "run"))
    reference.load_state_dict(run["initial"])
    reference.train()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=lr, betas=(0.9, 0.98), eps=1.0, weight_decay=0.0)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine_with_warmup(step, 0, steps)
        optimizer.zero_grad()
        for micro in forwards[2 * step : 2 * step + 2]:
            (reference(**micro["inputs"], return_loss=True).loss / 2).backward()
        optimizer.step()
        with torch.no_grad():
            reference.logit_scale.clamp_(0, 4.6052)
    trained = saved_weights(tmp_path / "run")
    moved = max((trained[n] - run["initial"][n]).abs().max().item() for n in trained)
    assert moved > 1e-3
    for name, tensor in reference.state_dict().items():
        assert torch.allclose(trained[name], tensor, atol=2e-6, rtol=0), name


# ----------------------------------------------------------------------------------------------------------------------
# Frozen towers and gradient clipping
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("towers", [["text"], ["vision"], ["text", "vision"]])
def test_frozen_towers_get_no_gradient_and_keep_their_weights(tmp_path, synthetic_cache, towers):
    prefixes = {"text": TEXT_TOWER_PREFIXES, "vision": VISION_TOWER_PREFIXES}
    frozen = tuple(p for tower in towers for p in prefixes[tower])
    recorder = RunRecorder()
    recorder.main(tiny_args(tmp_path / "run", synthetic_cache, "--do_train", "--max_train_steps", "2",
                            "--weight_decay", "0.2", *[f"--freeze_{tower}_tower" for tower in towers]))
    run = recorder.run
    assert len(run["steps"]) == 2
    for record in run["steps"]:
        assert not any(name.startswith(frozen) for name in record["with_grad"])  # gradients absent
        assert not any(name.startswith(frozen) for g in record["groups"] for name in g["names"])  # not optimised
    trained = saved_weights(tmp_path / "run")
    frozen_changed = _changed(run["initial"], trained, frozen)
    assert frozen_changed and not any(frozen_changed.values())  # every frozen weight unchanged, bit for bit
    for part in ("text_model.", "vision_model.", "temporal_transformer.", "logit_scale"):
        if not part.startswith(frozen):
            assert any(_changed(run["initial"], trained, (part,)).values()), f"{part} trains"


def test_max_grad_norm_clips_the_accumulated_gradient(tmp_path, synthetic_cache):
    common = ("--do_train", "--max_train_steps", "3", "--gradient_accumulation_steps", "2")
    free = RunRecorder(record_gradients=True)
    free.main(tiny_args(tmp_path / "free", synthetic_cache, *common))
    clipped = RunRecorder(record_gradients=True)
    clipped.main(tiny_args(tmp_path / "clipped", synthetic_cache, *common, "--max_grad_norm", "0.05"))
    unclipped_norm = free.run["steps"][0]["grad_norm"]  # same weights and batch at step 1
    assert unclipped_norm > 0.2
    for record in clipped.run["steps"]:
        assert record["grad_norm"] == pytest.approx(0.05, rel=1e-4)
    assert all(record["grad_norm"] > 0.06 for record in free.run["steps"])
    # Step 1 (same weights, same micro-batches): the gradient of the whole accumulated batch, scaled down to norm
    # 0.05 — not each micro-batch's gradient clipped on its own.
    factor = 0.05 / unclipped_norm
    free_gradients, clipped_gradients = free.run["steps"][0]["gradients"], clipped.run["steps"][0]["gradients"]
    assert free_gradients.keys() == clipped_gradients.keys()
    for name, gradient in free_gradients.items():
        assert torch.allclose(clipped_gradients[name], gradient * factor, atol=1e-7, rtol=1e-4), name


# ----------------------------------------------------------------------------------------------------------------------
# bf16 mixed precision and gradient checkpointing in the script
# ----------------------------------------------------------------------------------------------------------------------


def test_bf16_mixed_precision_runs_under_autocast_and_stays_close_to_fp32(tmp_path, synthetic_cache):
    common = ("--do_train", "--do_eval", "--max_train_steps", "4", "--visual_report", "False")
    fp32, bf16 = RunRecorder(), RunRecorder()
    fp32_results = fp32.main(tiny_args(tmp_path / "fp32", synthetic_cache, *common, "--mixed_precision", "no"))
    bf16_results = bf16.main(tiny_args(tmp_path / "bf16", synthetic_cache, *common, "--mixed_precision", "bf16"))
    assert not any(f["autocast"] for f in fp32.run["forwards"])
    assert bf16.run["forwards"] and all(f["autocast"] for f in bf16.run["forwards"])
    loss32, loss16 = logged(fp32.run, "train/loss"), logged(bf16.run, "train/loss")
    assert loss32.keys() == loss16.keys() == {1, 2, 3, 4}
    assert loss16 != loss32  # really another precision
    for step in loss32:
        assert loss16[step] == pytest.approx(loss32[step], abs=0.03), step
    # The weights stay float32 (autocast, not a bf16 model) and close to the fp32 run's.
    weights32, weights16 = saved_weights(tmp_path / "fp32"), saved_weights(tmp_path / "bf16")
    assert all(t.dtype == torch.float32 for t in weights16.values())
    assert max((weights32[n] - weights16[n]).abs().max().item() for n in weights32) < 2e-2
    assert bf16_results["CLIP2Video"]["num_videos"] == fp32_results["CLIP2Video"]["num_videos"] == 16


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_training(tmp_path, synthetic_cache):
    common = ("--do_train", "--max_train_steps", "2")
    plain, checkpointed = RunRecorder(), RunRecorder()
    plain.main(tiny_args(tmp_path / "plain", synthetic_cache, *common))
    checkpointed.main(tiny_args(tmp_path / "ckpt", synthetic_cache, *common, "--gradient_checkpointing"))
    micro_batches = len(plain.run["forwards"])
    assert micro_batches == 2 == len(checkpointed.run["forwards"])
    # Each checkpointed layer runs again in backward: twice per micro-batch instead of once.
    for layer in ("vision_model.encoder.layers.0.mlp", "text_model.encoder.layers.0.mlp",
                  "temporal_transformer.layers.0.mlp"):
        assert plain.run["layer_calls"][layer] == micro_batches, layer
        assert checkpointed.run["layer_calls"][layer] == 2 * micro_batches, layer
    weights, checkpointed_weights = saved_weights(tmp_path / "plain"), saved_weights(tmp_path / "ckpt")
    for name, tensor in weights.items():
        assert torch.allclose(tensor, checkpointed_weights[name], atol=1e-6), name
    assert logged(plain.run, "train/loss") == pytest.approx(logged(checkpointed.run, "train/loss"), abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Starting from a CLIP checkpoint
# ----------------------------------------------------------------------------------------------------------------------


def _tiny_clip_folder(folder) -> CLIPModel:
    """A random CLIPModel with CLIP's vocabulary (and the repository's tokenizer files), as a Hub CLIP repo is laid out."""
    torch.manual_seed(7)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=0),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=32, logit_scale_init_value=2.5)
    clip = CLIPModel(config)
    with torch.no_grad():
        for parameter in clip.parameters():  # no weight equals a default initialisation
            parameter.add_(torch.randn_like(parameter) * 0.05)
    clip.save_pretrained(folder)
    for file in (REPO_ROOT / "clip_tokenizer").iterdir():
        shutil.copy(file, folder)
    return clip


def test_training_from_a_clip_checkpoint_starts_from_its_unchanged_weights(tmp_path, synthetic_cache):
    clip = _tiny_clip_folder(tmp_path / "clip")
    recorder = RunRecorder()
    recorder.main(tiny_args(tmp_path / "run", synthetic_cache, "--model_name_or_path", str(tmp_path / "clip"),
                            "--do_train", "--max_train_steps", "2"))
    initial, clip_state = recorder.run["initial"], clip.state_dict()
    clip_keys = [k for k in initial if is_clip(k)]
    assert sorted(clip_keys) == sorted(k for k in clip_state if not k.endswith("position_ids"))
    for name in clip_keys:
        assert torch.equal(initial[name], clip_state[name]), name
    # The new modules start as the original starts them: copies of the CLIP text tower.
    assert torch.equal(initial["frame_position_embeddings.weight"], clip_state["text_model.embeddings.position_embedding.weight"])
    for key, value in clip_state.items():
        if key.startswith("text_model.encoder.layers.0."):
            assert torch.equal(initial["temporal_transformer.layers.0." + key.removeprefix("text_model.encoder.layers.0.")],
                               value), key
    trained = saved_weights(tmp_path / "run")
    assert any(not torch.equal(trained[n], clip_state[n]) for n in clip_keys)  # and then it trains
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model_type"] == "clip2video" and config["vision_config"]["hidden_size"] == 48
    assert config["num_frames"] == 4 and config["num_temporal_layers"] == 1


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints: every epoch; resuming from a given folder
# ----------------------------------------------------------------------------------------------------------------------


def test_checkpointing_steps_epoch_saves_at_each_epoch_end(tmp_path, synthetic_cache):
    output = tmp_path / "run"
    RunRecorder().main(tiny_args(output, synthetic_cache, "--do_train", "--num_train_epochs", "2",
                                 "--checkpointing_steps", "epoch"))
    root = output / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-4", "checkpoint-8"]  # 32 rows / 8 = 4 steps an epoch
    for steps, epoch in ((4, 1), (8, 2)):
        state = json.loads((root / f"checkpoint-{steps}" / "trainer_state.json").read_text())
        assert (state["completed_steps"], state["epoch"], state["batches_in_epoch"]) == (steps, epoch, 0)
    final = saved_weights(output)
    last, first = saved_weights(root / "checkpoint-8"), saved_weights(root / "checkpoint-4")
    assert all(torch.equal(final[n], last[n]) for n in final)
    assert any(not torch.equal(final[n], first[n]) for n in final)


def test_resume_from_a_checkpoint_folder_runs_only_the_remaining_steps(tmp_path, synthetic_cache):
    steps, done = 8, 2  # checkpoint-2 is mid-epoch 0 (4 steps an epoch): the resumed run must skip 2 batches
    options = ("--do_train", "--num_train_epochs", "2", "--checkpointing_steps", "2", "--warmup_ratio", "0.25",
               "--save_total_limit", "4")
    full = RunRecorder(record_inputs=True)
    full.main(tiny_args(tmp_path / "full", synthetic_cache, *options))
    checkpoint = tmp_path / "full" / "checkpoints" / f"checkpoint-{done}"
    resumed = RunRecorder(record_inputs=True)
    results = resumed.main(tiny_args(tmp_path / "resumed", synthetic_cache, *options,
                                     "--resume_from_checkpoint", str(checkpoint)))
    assert results["CLIP2Video"]["completed_steps"] == steps
    run = resumed.run
    assert len(run["steps"]) == steps - done  # only the remaining steps
    # It starts from the checkpoint's weights, ...
    at_checkpoint = saved_weights(checkpoint)
    assert all(torch.equal(run["first_forward_state"][n], at_checkpoint[n]) for n in at_checkpoint)
    # ... at the checkpoint's place in the schedule (warm-up 2 steps, cosine over 8) ...
    for index, record in enumerate(run["steps"]):
        assert group_lr(record, False)[0][0] == pytest.approx(1e-3 * cosine_with_warmup(done + index, 2, steps))
    # ... and in the data (the rest of epoch 0, then epoch 1, as the uninterrupted run saw them) ...
    for mine, theirs in zip(run["forwards"], full.run["forwards"][done:], strict=True):
        assert torch.equal(mine["inputs"]["input_ids"], theirs["inputs"]["input_ids"])
    # ... with the optimizer state: the end is the uninterrupted run's, bit for bit.
    expected, got = saved_weights(tmp_path / "full"), saved_weights(tmp_path / "resumed")
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name


# ----------------------------------------------------------------------------------------------------------------------
# Tie rule, synthetic-video cache
# ----------------------------------------------------------------------------------------------------------------------


def test_tie_rule_decides_tied_scores_in_the_script(tmp_path, synthetic_cache):
    # A mean-pooling model whose frame projection is zero gives every video the same (zero) embedding: all tied.
    model_dir = tmp_path / "model"
    RunRecorder().main(tiny_args(model_dir, synthetic_cache, "--do_train", "--max_train_steps", "1",
                                 "--temporal_head", "mean", "--use_tdb", "False", "--use_tab", "False"))
    model = CLIP2VideoModel.from_pretrained(model_dir)
    with torch.no_grad():
        model.visual_projection.weight.zero_()
    model.save_pretrained(model_dir)
    results = {}
    for rule in ("pessimistic", "optimistic", "original"):
        results[rule] = RunRecorder().main([
            "--model_name_or_path", str(model_dir), "--dataset_name", "synthetic-motion", "--train_size", "32",
            "--test_size", "16", "--cache_dir", synthetic_cache, "--output_dir", str(tmp_path / rule), "--do_eval",
            "--report_to", "none", "--tie_rule", rule, "--visual_report", "False"])["CLIP2Video"]
    # 16 videos all tied: a tie counts against the model (rank 16), for it (rank 1), or the original's way (each tie
    # position is reported as a rank: 16 ranks 1..16 per query, so R@1 = 1/16).
    assert (results["pessimistic"]["t2v_R1"], results["pessimistic"]["t2v_MeanR"]) == (0.0, 16.0)
    assert (results["optimistic"]["t2v_R1"], results["optimistic"]["t2v_MeanR"]) == (100.0, 1.0)
    assert (results["pessimistic"]["v2t_R1"], results["optimistic"]["v2t_R1"]) == (0.0, 100.0)
    assert results["original"]["t2v_R1"] == pytest.approx(100 / 16)
    assert results["original"]["t2v_MeanR"] == pytest.approx(8.5)


def test_synthetic_videos_go_to_clip2video_cache(tmp_path, monkeypatch):
    cache = tmp_path / "c2v-cache"
    monkeypatch.setenv("CLIP2VIDEO_CACHE", str(cache))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))  # read at run time
    args = [a for a in tiny_args(tmp_path / "run", "unused", "--do_eval", "--visual_report", "False")]
    args = args[: args.index("--cache_dir")] + args[args.index("--cache_dir") + 2 :]  # no --cache_dir
    RunRecorder().main(args)
    videos = sorted(cache.rglob("*.mp4"))
    assert len(videos) == 16 and all("synthetic-motion" in str(v.relative_to(cache)) for v in videos)
    assert not any((tmp_path / "hf-datasets").rglob("*.mp4"))
    stamps = [v.stat().st_mtime_ns for v in videos]
    RunRecorder().main(args)  # a second run reuses them
    assert [v.stat().st_mtime_ns for v in sorted(cache.rglob("*.mp4"))] == stamps


# ----------------------------------------------------------------------------------------------------------------------
# The default job's claims, shortened: CLIP2Video learns and reads frame order; mean pooling cannot
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_mean_pooling_clip2video_learns_and_beats_mean_pooling_on_order(tmp_path, synthetic_cache, capsys):
    """The default job (`python run_retrieval.py`) at a quarter of its size: 256 training / 40 test videos of 12 frames
    (every test video has its exact time reversal, with another caption), a 32-wide model, 10 epochs (about 70 s)."""
    output = tmp_path / "run"
    results = RunRecorder().main([
        "--dataset_name", "synthetic-motion", "--train_size", "256", "--test_size", "40", "--synthetic_frame_size", "32",
        "--scratch_image_size", "32", "--scratch_patch_size", "8", "--scratch_hidden_size", "32",
        "--scratch_num_layers", "1", "--output_dir", str(output), "--cache_dir", synthetic_cache, "--do_train",
        "--do_eval", "--compare_mean_pooling", "--learning_rate", "1e-3", "--clip_learning_rate", "1e-3",
        "--weight_decay", "0.01", "--train_batch_size", "32", "--num_train_epochs", "10", "--warmup_ratio", "0.05",
        "--max_grad_norm", "1.0", "--checkpointing_steps", "no", "--cache_videos", "--report_to", "none",
        "--train_group_size", "2", "--visual_report", "False"])
    clip2video, mean_pooling = results["CLIP2Video"], results["mean pooling"]
    # Chance is R@1 2.5% (40 videos); measured here: CLIP2Video 45 / 40, order accuracy 75.
    assert clip2video["t2v_R1"] >= 25 and clip2video["v2t_R1"] >= 25
    assert clip2video["order_accuracy"] >= 60
    # Mean pooling gives a video and its time reversal the same score: no order accuracy, R@1 at most 50%.
    assert mean_pooling["order_accuracy"] == 0.0
    assert mean_pooling["t2v_R1"] <= 50 and mean_pooling["v2t_R1"] <= 50
    assert mean_pooling["t2v_R1"] > 5  # it learns appearance
    baseline = json.loads((output / "mean_pooling" / "config.json").read_text())
    assert (baseline["temporal_head"], baseline["use_tdb"], baseline["tab_input"]) == ("mean", False, "none")
    table = capsys.readouterr().out
    assert "| CLIP2Video |" in table and "| mean pooling |" in table and "order acc." in table
