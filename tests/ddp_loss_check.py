"""Helper of tests/test_run_retrieval.py: loss and gradients of one global batch, run with 1 or 2 processes.

    python tests/ddp_loss_check.py OUT.pt
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ... tests/ddp_loss_check.py OUT.pt

Every process takes its slice of the same 8 caption-video pairs (rank order, as `GlobalBatchSampler` does); the
main process writes the loss and every parameter's gradient after `accelerator.backward`. A second, uneven global
batch keeps only the last 4 pairs, as when every video of rank 0's slice failed to decode: rank 0 then runs
`training_clip2video.placeholder_batch`, and the result must equal one process on those 4 pairs.
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import random_text, random_video, tiny_config  # noqa: E402
from loss_clip2video import CLIP2VideoContrastiveLoss  # noqa: E402
from modeling_clip2video import CLIP2VideoModel  # noqa: E402
from training_clip2video import compute_loss, placeholder_batch  # noqa: E402

GLOBAL_BATCH = 8


def loss_and_gradients(accelerator: Accelerator, model, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of the global batch and every parameter's gradient (after DDP's all-reduce) on this process."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.zero_grad(set_to_none=True)
    loss = compute_loss(model, batch, CLIP2VideoContrastiveLoss(unwrapped.config.center_weight), unwrapped.logit_scale)
    accelerator.backward(loss)
    grads = {name: p.grad.detach().clone() for name, p in unwrapped.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def main(out_path: str) -> None:
    accelerator = Accelerator()
    torch.manual_seed(0)
    config = tiny_config(original_padding=False)
    model = CLIP2VideoModel(config)
    input_ids, attention_mask = random_text(config, [5, 7, 16, 3, 9, 12, 4, 6], seed=1)
    pixel_values, video_mask = random_video(config, [6, 4, 6, 2, 5, 6, 3, 6], seed=2)
    pairs = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
             "video_mask": video_mask}
    local = GLOBAL_BATCH // accelerator.num_processes
    rows = slice(accelerator.process_index * local, (accelerator.process_index + 1) * local)
    model = accelerator.prepare(model)
    loss, grads = loss_and_gradients(accelerator, model, {key: value[rows] for key, value in pairs.items()})

    # The uneven global batch: pairs 4-7 only (rank 0's slice lost every video).
    if accelerator.num_processes == 1:
        uneven = {key: value[4:] for key, value in pairs.items()}
    elif accelerator.process_index == 0:
        uneven = placeholder_batch(config)
    else:
        uneven = {key: value[rows] for key, value in pairs.items()}
    uneven_loss, uneven_grads = loss_and_gradients(accelerator, model, uneven)
    if accelerator.is_main_process:
        torch.save({"loss": loss, "grads": grads, "uneven_loss": uneven_loss, "uneven_grads": uneven_grads,
                    "world_size": accelerator.num_processes}, out_path)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
