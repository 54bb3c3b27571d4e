"""One training objective per method, behind one interface for the loop.

- ``avid``: memory-bank NCE (or InfoNCE) of AVID_SPEC §3; Self/Cross/Joint by coefficients.
- ``cma``: AVID+CMA (§4), positive sets re-computed every ``resample_freq`` epochs.
- ``avc``: the binary audio-visual correspondence baseline (no memory bank needed; one is
  still kept, so every method's run checkpoint has the same shape and CMA can start from it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avid_model.correspondence import CorrespondenceLoss
from avid_model.losses import AVIDLoss, CMALoss, cma_positive_sets
from avid_model.memory_bank import MemoryBank
from training.config import LossConfig


class TrainingObjective(nn.Module):
    """Memory bank + loss of one method; ``forward(v, a, ids)`` gives ``(loss, terms)``."""

    def __init__(self, config: LossConfig, num_instances: int, dim: int, seed: int) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(seed)
        self.memory = MemoryBank(num_instances, dim, generator)
        self.sampler = torch.Generator().manual_seed(seed + 1)
        self.negatives = min(config.negatives, num_instances - 1)
        self.loss: nn.Module
        if config.method == "avid":
            self.loss = AVIDLoss(
                config.cross_coeff, config.within_coeff, config.temperature, config.objective
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
        else:
            self.loss = CorrespondenceLoss()

    def forward(
        self, video: Tensor, audio: Tensor, ids: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """video, audio: (B, D) unit embeddings; ids: (B,) instance ids on the same device."""
        if isinstance(self.loss, CorrespondenceLoss):
            return self.loss(video, audio, self.sampler)
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
