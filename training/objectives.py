"""One training objective per method, behind one interface for the loop.

- ``avid``: memory-bank NCE (or InfoNCE) of AVID_SPEC §3; Self/Cross/Joint by coefficients.
- ``cma``: AVID+CMA (§4), positive sets re-computed every ``resample_freq`` epochs.
- ``avc``: the binary audio-visual correspondence baseline (no memory bank needed; one is
  still kept, so every method's run checkpoint has the same shape and CMA can start from it).
- ``supervised``: not self-supervised: a linear classifier on each tower's embedding trained
  with the labels (cross-entropy). The results table's upper bound: what the same towers reach
  in the same budget when they are told the answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avid_model.correspondence import CorrespondenceLoss
from avid_model.losses import AVIDLoss, CMALoss, cma_positive_sets
from avid_model.memory_bank import MemoryBank
from training.config import LossConfig

SUPERVISED_TEMPERATURE = 0.1  # logits = classifier(unit embedding) / T


class LabelLoss(nn.Module):
    """Cross-entropy of a linear classifier on each modality's unit embedding.

    Every label must be a class id: the trainer refuses unlabelled clips (-1) once, up front,
    rather than with a device-to-host sync at every step."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"supervised training needs at least 2 classes, got {num_classes}")
        self.video = nn.Linear(dim, num_classes)
        self.audio = nn.Linear(dim, num_classes)

    def forward(
        self, video: Tensor, audio: Tensor, labels: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        terms: dict[str, Tensor] = {}
        loss = video.new_zeros(())
        for name, emb, head in (("video", video, self.video), ("audio", audio, self.audio)):
            logits = head(emb) / SUPERVISED_TEMPERATURE
            value = F.cross_entropy(logits, labels)
            terms[f"{name}_ce"] = value.detach()
            terms[f"{name}_accuracy"] = (logits.argmax(1) == labels).float().mean().detach()
            loss = loss + value / 2
        return loss, terms


class TrainingObjective(nn.Module):
    """Memory bank + loss of one method; ``forward(v, a, ids)`` gives ``(loss, terms)``."""

    def __init__(
        self, config: LossConfig, num_instances: int, dim: int, seed: int, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(seed)
        self.memory = MemoryBank(num_instances, dim, generator)
        self.sampler = torch.Generator().manual_seed(seed + 1)
        self.negatives = min(config.negatives, num_instances - 1)
        self.loss: nn.Module
        if config.method == "avid":
            self.loss = AVIDLoss(
                config.cross_coeff,
                config.within_coeff,
                config.temperature,
                config.objective,
                batch_positives=config.positives == "batch",
            )
        elif config.method == "cma":
            cma = config.cma
            self.loss = CMALoss(
                cma.instance_cross_coeff,
                cma.positive_within_coeff,
                cma.positive_cross_coeff,
                cma.instance_within_coeff,
                config.temperature,
                config.objective,
            )
            self.pos_k = min(cma.pos_k, num_instances - 2)
            self.within_negatives = min(cma.within_negatives, num_instances - 1 - self.pos_k)
            if self.pos_k < 1 or self.within_negatives < 1:
                raise ValueError(f"CMA needs more instances than {num_instances}")
        elif config.method == "supervised":
            self.loss = LabelLoss(dim, num_classes)
        else:
            self.loss = CorrespondenceLoss()

    def forward(
        self, video: Tensor, audio: Tensor, ids: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """video, audio: (B, D) unit embeddings; ids, labels: (B,) on the same device (labels
        only for ``supervised``)."""
        if isinstance(self.loss, CorrespondenceLoss):
            return self.loss(video, audio, self.sampler)
        if isinstance(self.loss, LabelLoss):
            if labels is None:
                raise ValueError("the supervised objective needs the batch's labels")
            return self.loss(video, audio, labels)
        memory = self.memory
        cpu_ids = ids.cpu()
        negatives = memory.sample_negatives(cpu_ids, self.negatives, self.sampler).to(ids.device)
        if isinstance(self.loss, CMALoss):
            if not memory.has_positive_sets:
                raise RuntimeError("CMA positive sets are not computed yet")
            positives = memory.positive_set[ids]
            within = memory.sample_negatives(
                cpu_ids, self.within_negatives, self.sampler, exclude_positives=True
            ).to(ids.device)
            return self.loss(
                video, audio, memory.video, memory.audio, ids, negatives, positives, within
            )
        assert isinstance(self.loss, AVIDLoss)
        return self.loss(video, audio, memory.video, memory.audio, ids, negatives)

    @torch.no_grad()
    def after_step(self, video: Tensor, audio: Tensor, ids: Tensor) -> None:
        """Write the step's embeddings into the memory banks (momentum update, all ranks)."""
        self.memory.update(video.float(), audio.float(), ids, self.config.momentum)

    @torch.no_grad()
    def resample_positives(self) -> None:
        """CMA: recompute every instance's positive set from the current memory banks."""
        positives = cma_positive_sets(
            self.memory.video, self.memory.audio, self.pos_k, self.config.cma.mode
        )
        self.memory.set_positive_sets(positives)

    def reset_z(self) -> None:
        """Forget the NCE constant so that the next step estimates it again."""
        z = getattr(self.loss, "z", None)
        if isinstance(z, Tensor):
            z.zero_()

    @property
    def z(self) -> float:
        z = getattr(self.loss, "z", None)
        return float(z) if isinstance(z, Tensor) else 0.0
