"""Audio-visual correspondence (AVC), the binary baseline AVID is compared with (L3-Net style).

"Does this audio belong to this video?": positives are the batch's own (video, audio) pairs,
negatives pair each video with another item's audio (a random non-zero roll of the batch).
The classifier's logit is a learnt affine function of the embeddings' cosine similarity, so
the baseline trains the same 128-d space as AVID and can be evaluated the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def correspondence_loss(
    video_emb: Tensor,
    audio_emb: Tensor,
    log_scale: Tensor,
    bias: Tensor,
    shift: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Binary cross-entropy over B positive and B negative pairs.

    video_emb, audio_emb: (B, D) L2-normalised; log_scale, bias: 0-d; shift in [1, B-1]: the
    negative for video i is audio (i + shift) mod B. Returns (loss, terms) with the accuracy.
    """
    batch = video_emb.shape[0]
    if batch < 2 or not 1 <= shift < batch:
        raise ValueError(f"need a batch of at least 2 and 1 <= shift < B, got B={batch}, {shift}")
    scale = log_scale.exp()
    pos = scale * (video_emb * audio_emb).sum(dim=1) + bias
    neg = scale * (video_emb * audio_emb.roll(shift, dims=0)).sum(dim=1) + bias
    logits = torch.cat([pos, neg]).float()
    targets = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    accuracy = ((logits > 0).float() == targets).float().mean()
    return loss, {"avc_accuracy": accuracy.detach(), "avc_scale": scale.detach()}


class CorrespondenceLoss(nn.Module):
    """Learnable scale (log, initialised to log 10) and bias around `correspondence_loss`."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(2.302585))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(
        self, video_emb: Tensor, audio_emb: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        batch = video_emb.shape[0]
        shift = int(torch.randint(1, batch, (1,), generator=generator).item())
        return correspondence_loss(video_emb, audio_emb, self.log_scale, self.bias, shift)
