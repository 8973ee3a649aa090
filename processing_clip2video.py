# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Processor for CLIP2Video: a CLIP tokenizer for captions and `CLIP2VideoVideoProcessor` for videos.

Captions are cleaned and tokenised like the original (ftfy/HTML clean-up, CLIP's BPE); videos go through the video
processor (`video_processing_clip2video`: decoding, the original's frame choice, the CLIP transform). Outputs use the
names the model takes: `input_ids`, `attention_mask` `(batch, max_words)`, `pixel_values`
`(batch, frames, 3, height, width)` and `video_mask` `(batch, frames)` (1 = real frame; padded frames are exact zeros).
This module also gives the video processor's public names, so `processing_clip2video` is the one import of both.
"""

import html
import re

import numpy as np
import torch

from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin


try:  # loaded as Hub remote code (a package) ...
    from .hub_clip2video import write_push_card
    from .frame_sampling import (
        VideoProcessorOptionError,
        original_frame_indices,
        random_segment_frame_indices,
        uniform_frame_indices,
        window_spans,
    )
    from .video_processing_clip2video import CLIP2VideoMetadata, CLIP2VideoVideoProcessor, as_return_type
    from .video_readers import VideoDecodeError, ffmpeg_frame_indices, ffmpeg_image_runs
except ImportError:  # ... or as a top-level module of the installed project
    from hub_clip2video import write_push_card
    from frame_sampling import (
        VideoProcessorOptionError,
        original_frame_indices,
        random_segment_frame_indices,
        uniform_frame_indices,
        window_spans,
    )
    from video_processing_clip2video import CLIP2VideoMetadata, CLIP2VideoVideoProcessor, as_return_type
    from video_readers import VideoDecodeError, ffmpeg_frame_indices, ffmpeg_image_runs


# ----------------------------------------------------------------------------------------------------
# Text cleaning (the original's `basic_clean` + `whitespace_clean` + lower case)
# ----------------------------------------------------------------------------------------------------


def clean_caption(text: str) -> str:
    """ftfy fix, HTML-unescape twice, collapse whitespace, lower case — the original tokenizer's clean-up."""
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


# ----------------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------------

TEXT_KWARGS = ("padding", "truncation", "max_length", "max_words", "pad_to_multiple_of", "return_attention_mask")


class CLIP2VideoProcessor(ProcessorMixin):
    r"""
    CLIP2Video processor: a CLIP tokenizer for captions and a [`CLIP2VideoVideoProcessor`] for videos.

    `processor(text=..., videos=..., return_tensors="pt")` returns `input_ids` and `attention_mask`
    `(batch, max_words)` for the text and `pixel_values` `(batch, num_frames, 3, H, W)` and
    `video_mask` `(batch, num_frames)` for the videos. Captions are cleaned like the original (ftfy,
    HTML unescape twice, whitespace collapse, lower case), truncated to `max_words` tokens keeping the
    end token, and padded with `text_pad_token_id` (0 like the original; the model reads the mask).
    The tokenizer's own options (`padding`, `truncation`, `max_length`, `pad_to_multiple_of`,
    `return_attention_mask`) are accepted per call, flat or as `text_kwargs`; video options flat or as
    `videos_kwargs`.

    Args:
        video_processor ([`CLIP2VideoVideoProcessor`]): the video processor.
        tokenizer ([`CLIPTokenizer`]): CLIP's BPE tokenizer (49,408 tokens).
        max_words (`int`, *optional*, defaults to 32): text length including start and end tokens.
        text_pad_token_id (`int`, *optional*, defaults to 0): id written at padded text positions;
            `None` keeps the tokenizer's pad token.

    Example:

    ```python
    >>> from processing_clip2video import CLIP2VideoProcessor
    >>> processor = CLIP2VideoProcessor.from_clip_tokenizer("clip_tokenizer")
    >>> inputs = processor(text=["a man plays guitar"], videos=["video.mp4"], return_tensors="pt")
    >>> inputs["pixel_values"].shape, inputs["video_mask"].shape
    (torch.Size([1, 12, 3, 224, 224]), torch.Size([1, 12]))
    >>> processor.batch_decode(inputs["input_ids"], skip_special_tokens=True)
    ['a man plays guitar']
    ```
    """

    def __init__(self, video_processor=None, tokenizer=None, max_words: int = 32, text_pad_token_id: int | None = 0, **kwargs):
        if not isinstance(max_words, int) or max_words < 2:
            raise ValueError(f"max_words must be an int >= 2 (start and end tokens), got {max_words!r}")
        self.max_words = max_words
        self.text_pad_token_id = text_pad_token_id
        super().__init__(video_processor, tokenizer, **kwargs)

    @classmethod
    def from_clip_tokenizer(cls, tokenizer_name_or_path: str, max_words: int = 32, **video_processor_kwargs):
        """Builds a processor from CLIP tokenizer files (`vocab.json` + `merges.txt`, e.g. the
        repository's `clip_tokenizer/` folder or `openai/clip-vit-base-patch32`)."""
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_name_or_path)
        if len(tokenizer) != 49408:
            raise ValueError(f"{tokenizer_name_or_path}: expected CLIP's 49,408-token vocabulary, got {len(tokenizer)}")
        return cls(CLIP2VideoVideoProcessor(**video_processor_kwargs), tokenizer, max_words=max_words)

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos=None,
        return_tensors: str | None = "pt",
        text_kwargs: dict | None = None,
        videos_kwargs: dict | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            text (`str` or `list[str]`, *optional*): caption(s).
            videos (*optional*): one video or a list of videos (see [`CLIP2VideoVideoProcessor`]).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"`, or `None` for lists (ids
                and masks as lists of ints, like the tokenizer).
            text_kwargs, videos_kwargs (`dict`, *optional*): options per modality (transformers' convention).
            **kwargs: text options ([`~CLIP2VideoProcessor.tokenize`]: `padding`, `truncation`,
                `max_length`/`max_words`, ...) and video processor options (`num_frames`, `frame_sampling`,
                `seed`, ...) for this call; options of the modality not given are ignored, unknown names raise.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (int64, `(batch, max_words)`) when `text`
            is given and `pixel_values`, `video_mask` when `videos` is given.
        """
        if text is None and videos is None:
            raise ValueError("give `text`, `videos` or both")
        text_options = {**(text_kwargs or {}), **{name: kwargs.pop(name) for name in TEXT_KWARGS if name in kwargs}}
        video_options = {**(videos_kwargs or {}), **kwargs}
        unknown = set(text_options) - set(TEXT_KWARGS) | set(video_options) - set(self.video_processor.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"unexpected arguments: {sorted(unknown)}")
        data = {}
        if text is not None:
            data.update(self.tokenize(text, return_tensors=return_tensors, **text_options))
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **video_options))
        return BatchFeature(data=data)

    def tokenize(
        self,
        text: str | list[str],
        max_words: int | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = "max_length",
        truncation: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool = True,
    ) -> dict:
        """Original-style tokenisation: `[SOT] + tokens[: max_words - 2] + [EOT]`, padded to `max_words`
        with `text_pad_token_id` (the defaults); the tokenizer's options change it as they do there.

        Args:
            text (`str` or `list[str]`): caption(s), cleaned like the original first.
            max_words / max_length (`int`, *optional*): length including start and end tokens (the same
                option under the original's and transformers' names; defaults to `self.max_words`).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"` or `None` (lists).
            padding, truncation, pad_to_multiple_of: as the tokenizer's (`padding=False` leaves each
                caption its own length, which needs `return_tensors=None`).
            return_attention_mask (`bool`, defaults to `True`): also return `attention_mask`.

        Returns:
            dict with `input_ids` (and `attention_mask`), each `(batch, length)` int64.
        """
        if max_words is not None and max_length is not None and max_words != max_length:
            raise ValueError(f"max_words={max_words} and max_length={max_length} disagree (they are the same option)")
        length = next((value for value in (max_length, max_words) if value is not None), self.max_words)
        if not isinstance(length, int) or length < 2:
            raise ValueError(f"max_words must be an int >= 2 (start and end tokens), got {length!r}")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(item, str) for item in texts):
            raise TypeError("text must be a string or a list of strings")
        encoded = self.tokenizer(
            [clean_caption(item) for item in texts],
            padding=padding,
            truncation=truncation,
            max_length=length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=True,
        )
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        if self.text_pad_token_id is not None:
            input_ids = [[token if keep else self.text_pad_token_id for token, keep in zip(ids, mask)]
                         for ids, mask in zip(input_ids, attention_mask)]
        data = {"input_ids": input_ids, "attention_mask": attention_mask} if return_attention_mask else {"input_ids": input_ids}
        if return_tensors is None:
            return data
        if len({len(ids) for ids in input_ids}) > 1:
            raise ValueError(f"captions of different lengths cannot be returned as tensors (padding={padding!r}); "
                             "pad them or use return_tensors=None")
        arrays = {key: np.asarray(value, dtype=np.int64).reshape(len(texts), -1) for key, value in data.items()}
        return as_return_type({key: torch.from_numpy(value) for key, value in arrays.items()}, return_tensors)

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        """Captions of a batch of token ids (`(batch, length)` tensor, array or lists): the tokenizer's
        `batch_decode` after dropping the padding behind each end token (padding with 0 would print "!")."""
        if isinstance(sequences, (torch.Tensor, np.ndarray)):
            sequences = sequences.tolist()
        return self.tokenizer.batch_decode([self._strip_padding(ids) for ids in sequences], **kwargs)

    def decode(self, token_ids, **kwargs) -> str:
        """Caption of one sequence of token ids, without the padding behind its end token."""
        if isinstance(token_ids, (torch.Tensor, np.ndarray)):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            return self.tokenizer.decode(token_ids, **kwargs)
        return self.tokenizer.decode(self._strip_padding(token_ids), **kwargs)

    def _strip_padding(self, ids) -> list[int]:
        """Ids up to and including the first end token: what follows it is padding."""
        ids = [int(token) for token in ids]
        end = self.tokenizer.eos_token_id
        return ids[: ids.index(end) + 1] if end in ids else ids

    def _upload_modified_files(self, working_dir, repo_id: str, *args, **kwargs):
        """The upload of `push_to_hub`, with the project's model card instead of transformers' placeholder (see
        `hub_clip2video.write_push_card`)."""
        write_push_card(working_dir, repo_id, getattr(self.tokenizer, "name_or_path", None))
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "video_mask"]

CLIP2VideoProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "CLIP2VideoMetadata",
    "CLIP2VideoProcessor",
    "CLIP2VideoVideoProcessor",
    "VideoDecodeError",
    "VideoProcessorOptionError",
    "clean_caption",
    "ffmpeg_frame_indices",
    "ffmpeg_image_runs",
    "original_frame_indices",
    "random_segment_frame_indices",
    "uniform_frame_indices",
    "window_spans",
]
