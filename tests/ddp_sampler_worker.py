"""Worker for ``tests/test_sampling.py``: run under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Trains a tiny ViT for two epochs with :class:`FERTrainer` and its weighted sampler, records which
sample indices each rank's train batches carried, and writes ``{rank: [[batch indices], ...]}`` to
``<out_dir>/rank<R>.json``. Usage: ``torchrun --nproc_per_node 2 tests/ddp_sampler_worker.py OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

from modeling.cli import end_distributed
from modeling.training.sampling import class_weights
from modeling.training.trainer import FERTrainer

NUM_SAMPLES = 48  # 6 batches of 4 per rank and epoch with 2 ranks
BATCH_SIZE = 4
SEED = 123


def skewed_labels(n: int = NUM_SAMPLES) -> list[int]:
    """Class 0 dominates: 32 / 12 / 4 samples of classes 0 / 1 / 2."""
    return [0] * (2 * n // 3) + [1] * (n // 4) + [2] * (n - 2 * n // 3 - n // 4)


class IndexedImages(torch.utils.data.Dataset):
    def __init__(self, labels: list[int]):
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        return {
            "pixel_values": torch.randn(3, 32, 32, generator=generator),
            "labels": self.labels[index],
            "index": index,
        }


class RecordingTrainer(FERTrainer):
    """Records the sample indices of every training batch before the loss."""

    seen: list[list[int]]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        self.seen.append(inputs.pop("index").tolist())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def main(out_dir: str) -> None:
    labels = skewed_labels()
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    args = TrainingArguments(
        output_dir=str(Path(out_dir) / "run"),
        per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=2,
        seed=SEED,
        use_cpu=True,
        ddp_backend="gloo",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = RecordingTrainer(
        model=ViTForImageClassification(config),
        args=args,
        train_dataset=IndexedImages(labels),
        sample_weights=class_weights(labels, "inverse"),
    )
    trainer.seen = []
    trainer.train()
    rank = trainer.args.process_index
    record = {"rank": rank, "world_size": trainer.args.world_size, "batches": trainer.seen}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(record))
    end_distributed()  # as the scripts do: gloo's threads left to interpreter exit once aborted a rank (SIGABRT)


if __name__ == "__main__":
    main(sys.argv[1])
