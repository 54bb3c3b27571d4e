"""Memory banks of AVID / AVID+CMA (AVID_SPEC §3-4): one slot per instance and modality.

`MemoryBank` holds the video bank `V` and the audio bank `A`, each `(N, D)` and row-normalised,
plus an optional `positive_set` `(N, P)` for CMA. All three are buffers, so `state_dict()`
(and therefore a checkpoint) carries them.

Under DDP (``torch.distributed`` initialised with world size > 1) `MemoryBank.update`
all-gathers the embeddings and ids of every rank before writing, so each rank keeps an
identical full replica; `all_reduce_mean` averages a tensor (the NCE constant Z) across ranks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MemoryBank", "all_reduce_mean", "distributed_world_size"]


def distributed_world_size() -> int:
    """Number of ranks when torch.distributed is initialised, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of `tensor` over all ranks (a new tensor); `tensor` itself when not distributed."""
    if distributed_world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def _all_gather_rows(tensor: Tensor) -> Tensor:
    """Concatenate `tensor` (B_r, ...) from every rank in rank order -> (sum_r B_r, ...).

    Ranks may hold different B_r: sizes are gathered first and rows padded to the maximum.
    """
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, counts, strict=True)], dim=0)


def _last_occurrence(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Unique ids (U,) and, for each, the position of its last occurrence in `ids` (U,)."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(ids.shape[0], device=ids.device)
    last = torch.zeros_like(unique).scatter_reduce_(0, inverse, positions, reduce="amax")
    return unique, last


class MemoryBank(nn.Module):
    """Video and audio memory banks `(N, D)` with an optional CMA positive set `(N, P)`.

    Args:
        num_instances: N, one slot per source video.
        dim: D, the embedding size (128 in the paper).
        generator: seeds the initial randn draw (banks are randn, then row-normalised).
    """

    video: Tensor
    audio: Tensor
    positive_set: Tensor

    def __init__(
        self, num_instances: int, dim: int = 128, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if num_instances < 2:
            raise ValueError(f"a memory bank needs at least 2 instances, got {num_instances}")
        video = F.normalize(torch.randn(num_instances, dim, generator=generator), dim=1)
        audio = F.normalize(torch.randn(num_instances, dim, generator=generator), dim=1)
        self.register_buffer("video", video)
        self.register_buffer("audio", audio)
        self.register_buffer("positive_set", torch.empty(num_instances, 0, dtype=torch.long))

    @property
    def num_instances(self) -> int:
        return int(self.video.shape[0])

    @property
    def has_positive_sets(self) -> bool:
        return self.positive_set.shape[1] > 0

    def set_positive_sets(self, positives: Tensor) -> None:
        """Store CMA positive sets `positives` (N, P) of instance ids (any integer dtype)."""
        n = self.num_instances
        if positives.dim() != 2 or positives.shape[0] != n:
            raise ValueError(f"positive sets must be ({n}, P), got {tuple(positives.shape)}")
        if positives.numel() and (int(positives.min()) < 0 or int(positives.max()) >= n):
            raise ValueError(f"positive ids must lie in [0, {n})")
        self.positive_set = positives.detach().to(device=self.video.device, dtype=torch.long)

    @torch.no_grad()
    def sample_negatives(
        self,
        ids: Tensor,
        k: int,
        generator: torch.Generator | None = None,
        exclude_positives: bool = False,
    ) -> Tensor:
        """Draw `k` negative ids per instance, uniformly and with replacement.

        Shapes: ids (B,) -> (B, k) long, on `ids.device`.

        Candidates are the N-1 other instances (never the instance itself); with
        `exclude_positives`, also never an id in the instance's positive set. Exact exclusion:
        per row, draw r uniformly from [0, N - |E|) for the sorted excluded set E (duplicates
        removed) and return the r-th id not in E, i.e. r + #{j : E_j - j <= r}. Vectorised over
        the batch; deterministic given `generator` (r = floor(u * (N - |E|)), u ~ U[0, 1) in
        float64, drawn on the generator's device).
        """
        n = self.num_instances
        ids = ids.reshape(-1).long()
        excluded = ids[:, None]
        if exclude_positives:
            if not self.has_positive_sets:
                raise RuntimeError("exclude_positives=True but no positive sets are set")
            excluded = torch.cat([excluded, self.positive_set[ids].to(ids.device)], dim=1)
        excluded, _ = torch.sort(excluded, dim=1)
        # Mark repeats (a sorted row puts equal ids next to each other) and push them to the end.
        repeat = torch.zeros_like(excluded, dtype=torch.bool)
        repeat[:, 1:] = excluded[:, 1:] == excluded[:, :-1]
        excluded = torch.where(repeat, torch.full_like(excluded, 2 * n), excluded)
        excluded, _ = torch.sort(excluded, dim=1)
        num_excluded = (~repeat).sum(dim=1)  # (B,)
        num_candidates = n - num_excluded
        if bool((num_candidates < 1).any()):
            raise ValueError("an instance has no candidate negatives left after exclusion")
        columns = torch.arange(excluded.shape[1], device=ids.device)
        valid = columns[None, :] < num_excluded[:, None]
        shifted = torch.where(valid, excluded - columns, torch.full_like(excluded, 2 * n))

        device = generator.device if generator is not None else ids.device
        u = torch.rand(ids.shape[0], k, generator=generator, dtype=torch.float64, device=device)
        u = u.to(ids.device)
        r = (u * num_candidates[:, None].double()).floor().long()
        r = torch.minimum(r, num_candidates[:, None] - 1)
        # `shifted` is non-decreasing along each row, so a right-sided search counts E_j - j <= r.
        return r + torch.searchsorted(shifted.contiguous(), r, right=True)

    @torch.no_grad()
    def update(
        self, video_emb: Tensor, audio_emb: Tensor, ids: Tensor, momentum: float = 0.5
    ) -> None:
        """m_y <- normalize(momentum * m_y + (1 - momentum) * e_y) for both banks.

        Shapes: video_emb (B, D), audio_emb (B, D), ids (B,). Under DDP the embeddings and ids
        of all ranks are all-gathered first (rank order), so every replica stays identical.
        An id appearing several times in the (gathered) batch is updated once, from its LAST
        occurrence.
        """
        video_emb, audio_emb, ids = video_emb.detach(), audio_emb.detach(), ids.reshape(-1)
        if distributed_world_size() > 1:
            video_emb = _all_gather_rows(video_emb)
            audio_emb = _all_gather_rows(audio_emb)
            ids = _all_gather_rows(ids)
        unique, last = _last_occurrence(ids.long())
        for bank, emb in ((self.video, video_emb), (self.audio, audio_emb)):
            target = unique.to(bank.device)
            new = emb[last].to(device=bank.device, dtype=bank.dtype)
            bank[target] = F.normalize(momentum * bank[target] + (1.0 - momentum) * new, dim=1)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The positive set's width P is only known from the checkpoint: adopt it before copying.
        saved = state_dict.get(prefix + "positive_set")
        if isinstance(saved, Tensor) and saved.dim() == 2:
            self.positive_set = torch.empty(
                saved.shape, dtype=torch.long, device=self.positive_set.device
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
