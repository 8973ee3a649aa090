# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Custom `transformers` pipelines of CLIP2Video, saved with every model folder as remote code.

`CLIP2VideoModel.save_pretrained` writes this file next to the model and `config.custom_pipelines` names its two
classes (the entries `Pipeline.save_pretrained` writes for a registered pipeline), so a fresh interpreter loads them
from the folder or the Hub with `trust_remote_code=True`:

```python
>>> from transformers import pipeline
>>> classifier = pipeline("zero-shot-video-classification", model="path/to/model", trust_remote_code=True)
>>> classifier("clip.mp4", candidate_labels=["a dog runs", "a man cooks"])
[{'score': 0.93, 'label': 'a dog runs'}, {'score': 0.07, 'label': 'a man cooks'}]
>>> extractor = pipeline("feature-extraction", model="path/to/model", trust_remote_code=True)
>>> len(extractor("a cartoon rabbit")), len(extractor(videos="clip.mp4"))  # the retrieval vectors
(1024, 1024)
```

The videos are anything the model's processor reads: a file path or URL, encoded bytes, a folder of frames, a
`(T, H, W, 3)` uint8 array or tensor, a list of PIL frames, a `datasets` video value, or a list of such videos.
"""

from __future__ import annotations

import os
from collections import UserDict
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline


DEFAULT_HYPOTHESIS_TEMPLATE = "a video of {}."


class _Item:
    """One input of a call, tagged with its modality (a bare string could be a caption or a video path)."""

    def __init__(self, kind: str, value: Any):
        self.kind, self.value = kind, value


def _is_frame(item: Any) -> bool:
    return isinstance(item, Image.Image) or (isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 3)


def split_videos(videos: Any) -> tuple[list, bool]:
    """The single videos in `videos` and whether `videos` was one video (a list of frames is one video)."""
    if isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("no videos given")
        if all(_is_frame(item) for item in videos):
            return [list(videos)], True
        return list(videos), False
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
        return list(videos), False
    return [videos], True


def _first_text_inputs(text_inputs: list) -> UserDict:
    """The candidate captions' tokens of a (possibly batched) model input: every video of a batch shares them."""
    return text_inputs[0] if isinstance(text_inputs[0], UserDict) else text_inputs[0][0]


class _CLIP2VideoPipeline(Pipeline):
    """Loads the model's `CLIP2VideoProcessor` (tokenizer and video processor) and nothing else."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # transformers' batching collator pads `pixel_values` with the feature extractor's padding value: the video
        # processor plays that part (videos of one processor have one shape, so nothing is padded)
        self.feature_extractor = self.feature_extractor or self.processor.video_processor

    def _run(self, items: list[_Item], single: bool, **kwargs):
        outputs = super().__call__(items, **kwargs)
        return outputs[0] if single else outputs

    def _video_inputs(self, video: Any) -> dict[str, torch.Tensor]:
        inputs = self.processor(videos=[video], return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"].to(self.dtype), "video_mask": inputs["video_mask"]}


class ZeroShotVideoClassificationPipeline(_CLIP2VideoPipeline):
    """Zero-shot video classification: scores each candidate label's caption against the video.

    `classifier(videos, candidate_labels=[...], hypothesis_template="a video of {}.")` returns, for each video, the
    labels sorted by score, the scores being the softmax over the labels of the model's `logits_per_video` (as
    `zero-shot-image-classification` does with CLIP). `batch_size=` batches the videos (the captions are encoded once
    per batch); `device=` and `dtype=` of `pipeline(...)` are honoured.
    """

    def __call__(self, videos: Any = None, candidate_labels: list[str] | None = None, **kwargs):
        """
        Args:
            videos: one video or a list of videos (see the module docstring).
            candidate_labels (`list[str]`): the labels, each formatted with `hypothesis_template` into a caption.
            hypothesis_template (`str`, *optional*, defaults to `"a video of {}."`): `"{}"` keeps the labels as they are.
            batch_size (`int`, *optional*): videos per forward pass.

        Returns:
            `[{"score": float, "label": str}, ...]` best first for one video, a list of those for a list of videos.
        """
        if "video" in kwargs:
            videos = kwargs.pop("video")
        if videos is None:
            raise ValueError("zero-shot-video-classification needs `videos`")
        if not candidate_labels or isinstance(candidate_labels, str) or not all(
                isinstance(label, str) for label in candidate_labels):
            raise ValueError(f"`candidate_labels` must be a non-empty list of strings, got {candidate_labels!r}")
        batch, single = split_videos(videos)
        return self._run([_Item("video", video) for video in batch], single, candidate_labels=list(candidate_labels),
                         **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, **kwargs):
        if kwargs:
            raise TypeError(f"zero-shot-video-classification got unexpected arguments {sorted(kwargs)}")
        preprocess_params = {}
        if candidate_labels is not None:
            preprocess_params["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            if not isinstance(hypothesis_template, str) or "{}" not in hypothesis_template:
                raise ValueError(f"`hypothesis_template` must be a string with a `{{}}`, got {hypothesis_template!r}")
            preprocess_params["hypothesis_template"] = hypothesis_template
        return preprocess_params, {}, {}

    def preprocess(self, item: _Item, candidate_labels=None, hypothesis_template=DEFAULT_HYPOTHESIS_TEMPLATE):
        inputs = self._video_inputs(item.value)
        captions = [hypothesis_template.format(label) for label in candidate_labels]
        inputs["text_inputs"] = [self.processor(text=captions, return_tensors="pt")]
        inputs["candidate_labels"] = candidate_labels
        return inputs

    def _forward(self, model_inputs):
        candidate_labels = model_inputs.pop("candidate_labels")
        text = _first_text_inputs(model_inputs.pop("text_inputs"))
        outputs = self.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], return_loss=False,
                             **model_inputs)
        return {"logits": outputs.logits_per_video, "candidate_labels": candidate_labels}

    def postprocess(self, model_outputs):
        scores = model_outputs["logits"][0].float().softmax(dim=-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]


class CLIP2VideoFeatureExtractionPipeline(_CLIP2VideoPipeline):
    """The retrieval vectors of captions or videos: `get_text_features(...).pooler_output` /
    `get_video_features(...).pooler_output`, one `retrieval_embed_dim` vector per input.

    `extractor("a caption")` or `extractor(text=[...])` embeds captions, `extractor(videos=...)` videos (a positional
    input that is not a string is a video too). Returns a list of floats per input (a tensor with
    `return_tensors=True`); `logit_scale.exp() * text @ video` is the model's similarity.
    """

    def __call__(self, inputs: Any = None, *, text: Any = None, videos: Any = None, **kwargs):
        given = [name for name, value in (("inputs", inputs), ("text", text), ("videos", videos)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"give one of a positional input, `text=` or `videos=`, got {given or 'none'}")
        if inputs is not None:
            texts = [inputs] if isinstance(inputs, str) else inputs
            if isinstance(texts, (list, tuple)) and texts and all(isinstance(item, str) for item in texts):
                looks_like_video = [item for item in texts if item.startswith(("http://", "https://"))
                                    or os.path.exists(item)]
                if looks_like_video:
                    raise ValueError(f"{looks_like_video[0]!r} could be a caption or a video: pass it as `text=` "
                                     "or `videos=`")
                text = inputs
            else:
                videos = inputs
        if text is not None:
            single = isinstance(text, str)
            texts = [text] if single else list(text)
            if not texts or not all(isinstance(item, str) for item in texts):
                raise ValueError("`text` must be a string or a non-empty list of strings")
            return self._run([_Item("text", item) for item in texts], single, **kwargs)
        batch, single = split_videos(videos)
        return self._run([_Item("video", video) for video in batch], single, **kwargs)

    def _sanitize_parameters(self, return_tensors=None, **kwargs):
        if kwargs:
            raise TypeError(f"feature-extraction got unexpected arguments {sorted(kwargs)}")
        return {}, {}, ({} if return_tensors is None else {"return_tensors": return_tensors})

    def preprocess(self, item: _Item):
        if item.kind == "text":
            return dict(self.processor(text=[item.value], return_tensors="pt"))
        return self._video_inputs(item.value)

    def _forward(self, model_inputs):
        if "input_ids" in model_inputs:
            features = self.model.get_text_features(model_inputs["input_ids"], model_inputs["attention_mask"])
        else:
            features = self.model.get_video_features(model_inputs["pixel_values"], model_inputs["video_mask"])
        return {"features": features.pooler_output}

    def postprocess(self, model_outputs, return_tensors: bool = False):
        features = model_outputs["features"][0]
        return features if return_tensors else features.float().tolist()


__all__ = [
    "CLIP2VideoFeatureExtractionPipeline",
    "DEFAULT_HYPOTHESIS_TEMPLATE",
    "ZeroShotVideoClassificationPipeline",
    "split_videos",
]
