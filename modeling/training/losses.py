"""Soft-target losses for fine-tuning: mixup/cutmix, label smoothing, FER+ vote distributions and distillation.

The Trainer's default loss treats float labels as multi-label targets (BCE, NOTES #8). Every soft
target used here is a probability distribution over the classes, so the right loss is the
cross-entropy between that distribution and the softmax of the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing as in Szegedy et al. 2016 and ``F.cross_entropy``.

    labels: ``[N]`` integer class ids. Returns float ``[N, C]``: ``1 - smoothing + smoothing / C`` on the
    true class and ``smoothing / C`` elsewhere, so every row sums to 1.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D class ids, got shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    targets = torch.full((labels.shape[0], num_classes), off_value, device=labels.device)
    return targets.scatter_(1, labels.long().unsqueeze(1), on_value)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c targets[n, c] * log_softmax(logits)[n, c]``.

    logits: ``[N, C]``; targets: ``[N, C]`` distributions (rows summing to 1). Computed in float32
    so that half-precision logits do not lose the small target masses.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} must have one shape")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(targets.float() * log_probs).sum(dim=-1).mean()


def distillation_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha: float,
    temperature: float = 1.0,
    hard: bool = False,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1 - alpha) * CE(targets, student) + alpha * distillation term``, averaged over the batch.

    student_logits, teacher_logits: ``[N, C]``; targets: ``[N]`` class ids or ``[N, C]`` distributions (FER+ votes,
    mixup). Soft (Hinton et al. 2015): ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the ``T^2``
    keeping its gradient's scale independent of ``T``. Hard (DeiT, Touvron et al. 2021): cross-entropy with the
    teacher's argmax. ``alpha=0`` is the plain loss; ``alpha=1`` learns from the teacher alone.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)} differ"
        )
    student = student_logits.float()
    teacher = teacher_logits.detach().float()
    if targets.is_floating_point():
        base = soft_target_cross_entropy(student, targets)
    else:
        base = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    if hard:
        kd = F.cross_entropy(student, teacher.argmax(-1))
    else:
        kd = (
            F.kl_div(
                F.log_softmax(student / temperature, -1),
                F.log_softmax(teacher / temperature, -1),
                reduction="batchmean",
                log_target=True,
            )
            * temperature**2
        )
    return (1.0 - alpha) * base + alpha * kd
