"""`model.push_to_hub` / `processor.push_to_hub` publish the project's model card, checked on a mocked HfApi."""

from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError

from conftest import REPO_ROOT, TINY_TEXT, tiny_config
from modeling_clip2video import CLIP2VideoModel
from processing_clip2video import CLIP2VideoProcessor
from hub_clip2video import build_model_card
from utils_clip2video import load_processor, write_text

REPO = "someone/clip2video-pushed"
PLACEHOLDER = "This is the model card of a 🤗 transformers model"


def push(obj) -> dict[str, str]:
    """Runs `obj.push_to_hub(REPO)` against a mocked HfApi on a repository without a card; returns the uploaded
    files (name -> text for the README, name -> '' otherwise)."""
    uploaded = {}

    def create_commit(repo_id, operations, **kwargs):
        assert repo_id == REPO
        for operation in operations:
            path = Path(operation.path_or_fileobj)
            uploaded[operation.path_in_repo] = path.read_text(encoding="utf-8") if path.name == "README.md" else ""

    api = mock.MagicMock()
    api.create_repo.return_value.repo_id = REPO
    api.create_commit.side_effect = create_commit
    with mock.patch("transformers.utils.hub.hf_api", return_value=api), \
            mock.patch.object(ModelCard, "load", side_effect=EntryNotFoundError("no README.md in the repository")):
        obj.push_to_hub(REPO)
    assert api.create_commit.called
    return uploaded


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A model folder as run_retrieval.py leaves it: model, processor and the project's card with its results."""
    folder = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    text = {**TINY_TEXT, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407}
    model = CLIP2VideoModel(tiny_config(text_config=text))
    model.save_pretrained(folder)
    CLIP2VideoProcessor.from_clip_tokenizer(str(REPO_ROOT / "clip_tokenizer"), max_words=16, num_frames=6,
                                            size={"shortest_edge": 32},
                                            crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    card = build_model_card(title="CLIP2Video — my videos", summary="Trained on my videos.", repo=str(folder),
                            config=model.config, num_parameters=model.num_parameters(), with_processor=True,
                            sections=[("Results (my videos test)", "| T2V R@1 | 87.5 |")], datasets=["my/videos"],
                            metrics=["recall"])
    write_text(folder / "README.md", str(card))
    return folder


def check_project_card(text: str) -> ModelCard:
    assert PLACEHOLDER not in text
    card = ModelCard(text)
    assert card.data.library_name == "transformers" and card.data.license == "mit"
    assert "clip2video" in card.data.tags and card.data.pipeline_tag == "feature-extraction"
    assert f'AutoModel.from_pretrained("{REPO}", trust_remote_code=True)' in text  # the snippet names the new repo
    return card


def test_a_trained_model_pushes_its_card_with_metrics_and_data(trained_folder):
    uploaded = push(CLIP2VideoModel.from_pretrained(trained_folder))
    card = check_project_card(uploaded["README.md"])
    assert "| T2V R@1 | 87.5 |" in uploaded["README.md"] and card.data.datasets == ["my/videos"]
    assert {"config.json", "model.safetensors", "modeling_clip2video.py", "pipeline_clip2video.py",
            "hub_clip2video.py", "loss_clip2video.py"} <= set(uploaded)


def test_a_model_without_a_card_pushes_a_project_card(tmp_path):
    torch.manual_seed(0)
    uploaded = push(CLIP2VideoModel(tiny_config()))
    check_project_card(uploaded["README.md"])
    assert "input_ids, attention_mask" in uploaded["README.md"]  # no processor: the snippet starts from tensors


def test_the_processor_pushes_the_same_card(trained_folder):
    uploaded = push(load_processor(trained_folder))
    check_project_card(uploaded["README.md"])
    assert "| T2V R@1 | 87.5 |" in uploaded["README.md"]
    assert {"processor_config.json", "processing_clip2video.py", "hub_clip2video.py"} <= set(uploaded)
