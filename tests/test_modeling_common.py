"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester` of the installed release) applied to
CLIP2VideoModel the way transformers' `tests/models/clip` and `tests/models/x_clip` apply them to CLIP / X-CLIP.

Those tests are not in the transformers wheel; `make test` unpacks them from the source distribution of the installed
version into `<venv>/transformers-tests` (see the Makefile), or `TRANSFORMERS_TESTS_DIR` points at such a folder.
Without them the module is skipped, except under CI (`CI=true`), where it fails.

The sdist carries the top-level `tests/*_common.py` files but not the sub-packages they import for unrelated mixins;
`_load_common_tests` gives those imports empty stand-ins: `GenerationTesterMixin` (generative models only),
`ExportTesterMixin` (its export tests live in `tests/exporters/`, not shipped; torch.export of the feature methods is
tested in test_modeling.py) and `config_common_kwargs` (read only by a ConfigTester check that composite configs skip).
"""

import importlib
import os
import sys
import types
import unittest
import warnings
from pathlib import Path

import pytest
import torch
import transformers

from configuration_clip2video import CLIP2VideoConfig
from modeling_clip2video import CLIP2VideoModel


def _common_tests_dir() -> Path:
    """Where `make test` unpacks transformers' tests: `<venv>/transformers-tests`, or `$TRANSFORMERS_TESTS_DIR`."""
    return Path(os.environ.get("TRANSFORMERS_TESTS_DIR") or Path(sys.prefix) / "transformers-tests")


def _missing_reason(root: Path) -> str | None:
    """Why the common tests of the installed transformers cannot be used from `root`, or None when they can."""
    stamp = root / ".fetched"
    if not (root / "tests" / "test_modeling_common.py").is_file() or not stamp.is_file():
        return (f"transformers' common tests are not in {root}: `make test` fetches them from the transformers "
                f"{transformers.__version__} sdist (or set TRANSFORMERS_TESTS_DIR)")
    fetched = stamp.read_text().strip()
    if fetched != transformers.__version__:
        return (f"{root} holds the common tests of transformers {fetched}, but {transformers.__version__} is installed: "
                f"delete the folder and run `make test` again")
    return None


def _load_common_tests(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """Import `test_modeling_common` and `test_configuration_common` from `root/tests` as package `transformers_tests`."""
    stand_ins = {
        "transformers_tests.exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
        "transformers_tests.generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
        "transformers_tests.utils.test_configuration_utils": {"config_common_kwargs": {}},
    }
    package = types.ModuleType("transformers_tests")
    package.__path__ = [str(root / "tests")]
    sys.modules.setdefault("transformers_tests", package)
    for name, attributes in stand_ins.items():
        parent = name.rsplit(".", 1)[0]
        sys.modules.setdefault(parent, types.ModuleType(parent)).__path__ = []
        module = sys.modules.setdefault(name, types.ModuleType(name))
        module.__dict__.update(attributes)
    with warnings.catch_warnings():  # their marks (flash_attn_test, ...) are registered by transformers' own conftest
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        return (importlib.import_module("transformers_tests.test_modeling_common"),
                importlib.import_module("transformers_tests.test_configuration_common"))


_reason = _missing_reason(_common_tests_dir())
if _reason is not None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(_reason, pytrace=False)
    pytest.skip(_reason, allow_module_level=True)
_modeling_common, _configuration_common = _load_common_tests(_common_tests_dir())
ModelTesterMixin, ConfigTester = _modeling_common.ModelTesterMixin, _configuration_common.ConfigTester
floats_tensor, ids_tensor, random_attention_mask = (
    _modeling_common.floats_tensor, _modeling_common.ids_tensor, _modeling_common.random_attention_mask
)


class CLIP2VideoTextTester:
    """Text side (as transformers' CLIPTextModelTester): a tiny CLIP text tower and caption inputs."""

    def __init__(self, parent, batch_size=3, seq_length=7, vocab_size=99, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, max_position_embeddings=16):
        self.parent, self.batch_size, self.seq_length = parent, batch_size, seq_length
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.max_position_embeddings = max_position_embeddings

    def get_config(self) -> dict:
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                    num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
                    max_position_embeddings=self.max_position_embeddings, bos_token_id=self.vocab_size - 2,
                    eos_token_id=self.vocab_size - 1, pad_token_id=0, dropout=0.0, attention_dropout=0.0)

    def prepare_config_and_inputs_for_common(self) -> tuple[None, dict]:
        """`input_ids` `[bos, words..., eos, pad...]` and their attention mask (the end token is what CLIP pools)."""
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 2)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        lengths = attention_mask.sum(dim=1).clamp(min=2)
        attention_mask = (torch.arange(self.seq_length)[None] < lengths[:, None]).long()
        input_ids = torch.where(attention_mask.bool(), input_ids.clamp(min=1), 0)
        input_ids[:, 0] = self.vocab_size - 2
        input_ids[torch.arange(self.batch_size), lengths - 1] = self.vocab_size - 1
        return None, {"input_ids": input_ids, "attention_mask": attention_mask}


class CLIP2VideoVideoTester:
    """Video side (the `video_model_tester` of the common feature tests): a tiny CLIP vision tower over short videos."""

    def __init__(self, parent, batch_size=3, num_frames=4, image_size=30, patch_size=15, hidden_size=32,
                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=37):
        self.parent, self.batch_size, self.num_frames = parent, batch_size, num_frames
        self.image_size, self.patch_size, self.hidden_size = image_size, patch_size, hidden_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.intermediate_size = intermediate_size

    def get_config(self) -> dict:
        return dict(image_size=self.image_size, patch_size=self.patch_size, hidden_size=self.hidden_size,
                    num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                    intermediate_size=self.intermediate_size, dropout=0.0, attention_dropout=0.0)

    def prepare_config_and_inputs_for_common(self) -> tuple[None, dict]:
        """`pixel_values` `(batch, frames, 3, H, W)` and a `video_mask` with 1..frames leading valid frames."""
        shape = [self.batch_size, self.num_frames, 3, self.image_size, self.image_size]
        pixel_values = floats_tensor(shape)
        valid = (torch.arange(self.batch_size) % self.num_frames + 1)[:, None]
        video_mask = (torch.arange(self.num_frames)[None] < valid).long()
        return None, {"pixel_values": pixel_values, "video_mask": video_mask}


class CLIP2VideoModelTester:
    """The complete model (as transformers' CLIPModelTester / XCLIPModelTester): the two sides' inputs together."""

    def __init__(self, parent, is_training=True):
        self.parent, self.is_training = parent, is_training
        self.text_model_tester = CLIP2VideoTextTester(parent)
        self.video_model_tester = CLIP2VideoVideoTester(parent)
        self.batch_size = self.text_model_tester.batch_size
        self.seq_length = self.text_model_tester.seq_length
        self.num_hidden_layers = self.text_model_tester.num_hidden_layers

    def get_config(self) -> CLIP2VideoConfig:
        return CLIP2VideoConfig(
            text_config=self.text_model_tester.get_config(), vision_config=self.video_model_tester.get_config(),
            projection_dim=self.text_model_tester.hidden_size, num_frames=self.video_model_tester.num_frames,
            num_temporal_layers=2, num_centers=3, center_weight=0.3,
        )

    def prepare_config_and_inputs_for_common(self) -> tuple[CLIP2VideoConfig, dict]:
        _, text_inputs = self.text_model_tester.prepare_config_and_inputs_for_common()
        _, video_inputs = self.video_model_tester.prepare_config_and_inputs_for_common()
        return self.get_config(), {**text_inputs, **video_inputs, "return_loss": True}


class CLIP2VideoModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CLIP2VideoModel,)
    additional_model_inputs = ["pixel_values", "video_mask"]
    _is_composite = True
    # Same as CLIPModelTest / XCLIPModelTest: a dual encoder has no single input embedding table to resize.
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = CLIP2VideoModelTester(self)
        self.config_tester = ConfigTester(self, config_class=CLIP2VideoConfig, has_text_modality=False,
                                          common_properties=["projection_dim", "logit_scale_init_value", "num_frames"])

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="As CLIPOutput, the output has no single `hidden_states`: the towers' are in "
                   "`text_model_output` / `vision_model_output` (tested in test_modeling.py)")
    def test_hidden_states_output(self):
        pass

    @unittest.skip(reason="As CLIPOutput, the output has no single `attentions`: the towers' are in "
                   "`text_model_output` / `vision_model_output` (tested in test_modeling.py)")
    def test_attention_outputs(self):
        pass

    @unittest.skip(reason="As CLIPOutput, the output has no single `hidden_states` / `attentions` to retain "
                   "gradients on: the towers' are in `text_model_output` / `vision_model_output`")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(reason="As CLIPModel: a dual encoder has no single input embedding table (text tokens and video "
                   "frames) and no output embeddings")
    def test_model_get_set_embeddings(self):
        pass
