"""AVID and AVID+CMA losses over memory banks (AVID_SPEC §3-4): pure functions, thin modules.

Shapes: B batch, D embedding size, N instances (memory slots), K negatives per anchor,
P positives per anchor. Embeddings are L2-normalised; memory rows are read without gradient.

Two objectives over the same memory-bank positives and negatives, with logits l = x·m / T:

- ``"nce"`` (published): per anchor, with scores s = exp(l), K negatives and constant Z,
  L = -(1/P) Σ_p log(s_p / (s_p + K Z)) - Σ_k log(K Z / (s_k + K Z)).
- ``"infonce"`` (softmax): per anchor, the -log softmax of EACH positive against the K
  negatives, averaged over the positives:
  L = (1/P) Σ_p -log(exp(l_p) / (exp(l_p) + Σ_k exp(l_k))).
  Why it exists: on a small dataset the published NCE with Z fixed from the first batch
  collapsed to the trivial solution where every score equals Z, where the loss sticks at
  ln K + 1 per anchor (with P = 1: -log(1/(1+K)) - K log(K/(K+1)) -> ln K + 1 for large K).
  The softmax objective has no such fixed point.

Z (the NCE normaliser): when ``z`` is None it is estimated as the mean of exp(l) over the
negatives of the FIRST term computed (see each function for the order), detached; a given ``z``
is used as is. Either way it is returned as ``terms["z"]`` (also for ``"infonce"``, which does
not use it, so checkpoints look the same). Terms whose coefficient is zero are not computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from avid_model.memory_bank import all_reduce_mean, distributed_world_size

__all__ = [
    "AVIDLoss",
    "CMALoss",
    "Objective",
    "PositiveMode",
    "avid_loss",
    "cma_loss",
    "cma_positive_sets",
    "estimate_z",
    "memory_logits",
]

Objective = Literal["nce", "infonce"]
PositiveMode = Literal["consensus", "union", "video", "audio"]


def memory_logits(anchor: Tensor, memory: Tensor, idx: Tensor, temperature: float) -> Tensor:
    """Logits x·m / T of each anchor against its own memory rows (read without gradient).

    Shapes: anchor (B, D), memory (N, D), idx (B, M) long -> (B, M).
    Computed in float32 or wider even under autocast (exp(1/0.07) overflows float16).
    """
    dtype = torch.promote_types(anchor.dtype, torch.float32)
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        rows = memory.detach()[idx].to(dtype)  # (B, M, D)
        return torch.einsum("bd,bmd->bm", anchor.to(dtype), rows) / temperature


def estimate_z(anchor: Tensor, memory: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """Z = mean over batch and negatives of exp(x·m / T), detached; a 0-d tensor.

    Shapes: anchor (B, D), memory (N, D), negatives (B, K).
    """
    with torch.no_grad():
        return memory_logits(anchor, memory, negatives, temperature).exp().mean()


def nce_term(pos: Tensor, neg: Tensor, z: Tensor) -> Tensor:
    """Published NCE loss from logits, batch mean: pos (B, P), neg (B, K), z 0-d -> 0-d.

    -(1/P) Σ_p [l_p - log(e^{l_p} + K Z)] - Σ_k [log(K Z) - log(e^{l_k} + K Z)], in log space.
    """
    log_kz = math.log(neg.shape[1]) + torch.log(z.to(pos.dtype))
    pos_part = (pos - torch.logaddexp(pos, log_kz)).mean(dim=1)
    neg_part = (log_kz - torch.logaddexp(neg, log_kz)).sum(dim=1)
    return -(pos_part + neg_part).mean()


def infonce_term(pos: Tensor, neg: Tensor) -> Tensor:
    """Softmax loss from logits, batch mean: pos (B, P), neg (B, K) -> 0-d.

    (1/P) Σ_p [log(e^{l_p} + Σ_k e^{l_k}) - l_p]: each positive against the negatives only.
    """
    lse_neg = torch.logsumexp(neg, dim=1, keepdim=True)  # (B, 1)
    return (torch.logaddexp(pos, lse_neg) - pos).mean(dim=1).mean()


@dataclass(frozen=True)
class _Term:
    """One direction: `anchor` against `memory`, positives (B, P) and negatives (B, K) ids."""

    name: str
    anchor: Tensor
    memory: Tensor
    positives: Tensor
    negatives: Tensor
    # Batch positives: the other modality's current embeddings of the batch (B, D), with
    # gradient: the same row is the positive (in place of the memory rows `positives` names),
    # the other instances' rows are negatives beside the memory rows.
    current: Tensor | None = None
    ids: Tensor | None = None


def batch_logits(
    anchor: Tensor, other: Tensor, ids: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """In-batch logits x·y / T, both sides with gradient: (positives (B, 1), negatives (B, B)).

    The positive is the same row of ``other``; the negatives are every row of ``other``, with
    the rows of the same instance (the positive itself, and any other clip of the same video in
    the batch) set to -inf. Shapes: anchor, other (B, D); ids (B,). Float32 or wider.
    """
    dtype = torch.promote_types(anchor.dtype, torch.float32)
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        logits = anchor.to(dtype) @ other.to(dtype).T / temperature  # (B, B)
    same = ids.reshape(-1, 1) == ids.reshape(1, -1)
    return logits.diagonal().unsqueeze(1), logits.masked_fill(same, float("-inf"))


def _normalised(coeffs: dict[str, float]) -> dict[str, float]:
    if any(c < 0 for c in coeffs.values()):
        raise ValueError(f"loss coefficients must be >= 0, got {coeffs}")
    total = sum(coeffs.values())
    if total <= 0:
        raise ValueError(f"at least one loss coefficient must be > 0, got {coeffs}")
    return {name: c / total for name, c in coeffs.items()}


def _as_z(z: Tensor | float, like: Tensor) -> Tensor:
    dtype = torch.promote_types(like.dtype, torch.float32)
    z_t = torch.as_tensor(z, dtype=dtype, device=like.device).detach().reshape(())
    if not bool(z_t > 0):
        raise ValueError(f"Z must be > 0, got {float(z_t)}")
    return z_t


def _combine(
    groups: list[tuple[float, tuple[_Term, _Term]]],
    z: Tensor | float | None,
    temperature: float,
    objective: Objective,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ_g c_g (L_g1 + L_g2)/2 over groups with c_g > 0 (already normalised), with diagnostics."""
    if objective not in ("nce", "infonce"):
        raise ValueError(f"objective must be 'nce' or 'infonce', got {objective!r}")
    active = [(c, pair) for c, pair in groups if c > 0]
    first = active[0][1][0]
    if z is None and first.negatives.shape[1] == 0:
        # No memory negatives (in-batch only): no Z to estimate; infonce never reads it.
        z_t = _as_z(1.0, first.anchor)
    elif z is None:
        z_t = estimate_z(first.anchor, first.memory, first.negatives, temperature)
    else:
        z_t = _as_z(z, first.anchor)
    loss = z_t.new_zeros(())
    terms: dict[str, Tensor] = {}
    pos_sims: list[Tensor] = []
    neg_sims: list[Tensor] = []
    for coeff, pair in active:
        values = []
        for term in pair:
            neg = memory_logits(term.anchor, term.memory, term.negatives, temperature)
            if term.current is None or term.ids is None:
                pos = memory_logits(term.anchor, term.memory, term.positives, temperature)
            else:
                pos, in_batch = batch_logits(term.anchor, term.current, term.ids, temperature)
                neg = torch.cat([neg, in_batch], dim=1)
            value = nce_term(pos, neg, z_t) if objective == "nce" else infonce_term(pos, neg)
            terms[term.name] = value.detach()
            values.append(value)
            pos_sims.append(pos.detach().mean() * temperature)
            finite = neg.detach()[torch.isfinite(neg.detach())]  # in-batch same-instance: -inf
            neg_sims.append(finite.mean() * temperature)
        loss = loss + coeff * (values[0] + values[1]) / 2
    terms["z"] = z_t.detach()
    terms["pos_sim"] = torch.stack(pos_sims).mean()  # mean cosine of anchors to positives
    terms["neg_sim"] = torch.stack(neg_sims).mean()  # mean cosine of anchors to negatives
    return loss, terms


def avid_loss(
    video_emb: Tensor,
    audio_emb: Tensor,
    video_memory: Tensor,
    audio_memory: Tensor,
    ids: Tensor,
    negatives: Tensor,
    z: Tensor | float | None,
    cross_coeff: float = 1.0,
    within_coeff: float = 0.0,
    temperature: float = 0.07,
    *,
    objective: Objective = "nce",
    batch_positives: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """AVID loss (AVID_SPEC §3): cx (L_vA + L_aV)/2 + cw (L_vV + L_aA)/2, (cx, cw) summing to 1.

    Shapes: video_emb, audio_emb (B, D) L2-normalised; video_memory, audio_memory (N, D);
    ids (B,) long; negatives (B, K) long ids. Each direction has P = 1 positive, the memory
    row of the instance itself (A[ids] for v->A, V[ids] for v->V, ...), and the K negatives.
    Variants: Self-AVID (0, 1), Cross-AVID (1, 0, default), Joint-AVID (1, 1).

    With ``batch_positives`` (not the paper) the cross-modal positive is the other modality's
    current embedding of the same clip, with gradient into both towers, instead of its memory
    row: the memory rows start random and are rewritten only when their instance comes round
    again, so the paper's positive carries no signal until the bank has been filled once, and
    stale signal after. The other instances of the batch, also current and with gradient, join
    the K memory negatives (CLIP's in-batch negatives): with memory negatives alone both towers
    can lower the loss by drifting together away from the stale bank, and they collapse
    (measured: mean cosine between different clips 0.85 by step 200). Within-modal terms are
    unchanged.

    z=None estimates Z on the first term computed: v->A, or v->V without a cross-modal term.
    Returns (loss 0-d, terms) with terms "v2a", "a2v", "v2v", "a2a" (those computed), "z",
    "pos_sim" and "neg_sim" (mean cosine to positives / negatives), all detached.
    """
    c = _normalised({"cross": cross_coeff, "within": within_coeff})
    own = ids.reshape(-1, 1).long()
    v, a, vm, am = video_emb, audio_emb, video_memory, audio_memory
    v_pos, a_pos = (a, v) if batch_positives else (None, None)
    groups = [
        (
            c["cross"],
            (
                _Term("v2a", v, am, own, negatives, v_pos, ids),
                _Term("a2v", a, vm, own, negatives, a_pos, ids),
            ),
        ),
        (c["within"], (_Term("v2v", v, vm, own, negatives), _Term("a2a", a, am, own, negatives))),
    ]
    return _combine(groups, z, temperature, objective)


def cma_loss(
    video_emb: Tensor,
    audio_emb: Tensor,
    video_memory: Tensor,
    audio_memory: Tensor,
    ids: Tensor,
    negatives: Tensor,
    positives: Tensor,
    within_negatives: Tensor,
    z: Tensor | float | None,
    *,
    instance_cross_coeff: float = 1.0,
    positive_within_coeff: float = 1.0,
    positive_cross_coeff: float = 0.0,
    instance_within_coeff: float = 0.0,
    temperature: float = 0.07,
    objective: Objective = "nce",
) -> tuple[Tensor, dict[str, Tensor]]:
    """AVID+CMA loss (AVID_SPEC §4), coefficients normalised by their sum.

    Shapes: video_emb, audio_emb (B, D); memories (N, D); ids (B,); negatives (B, K) (instance
    terms, 1024 in the paper); positives (B, P) ids of each item's positive set; within_negatives
    (B, Kw) drawn outside the positive set and never the instance itself (positive terms, 64).

    Terms, in this order (the first one computed also estimates Z when z is None):
    1. instance cross-modal "inst_v2a", "inst_a2v": positive = own id, negatives;
    2. positive within-modal "pos_v2v" (v against V[positives]), "pos_a2a": P positives,
       within_negatives;
    3. positive cross-modal "pos_v2a" (v against A[positives]), "pos_a2v": same ids as 2;
    4. instance within-modal "inst_v2v", "inst_a2a": positive = own id, negatives.
    Each pair of directions is averaged, as in AVID. Returns (loss, terms) as `avid_loss`.
    """
    c = _normalised(
        {
            "inst_cross": instance_cross_coeff,
            "pos_within": positive_within_coeff,
            "pos_cross": positive_cross_coeff,
            "inst_within": instance_within_coeff,
        }
    )
    own = ids.reshape(-1, 1).long()
    v, a, vm, am = video_emb, audio_emb, video_memory, audio_memory
    pos, wneg = positives, within_negatives
    groups = [
        (
            c["inst_cross"],
            (_Term("inst_v2a", v, am, own, negatives), _Term("inst_a2v", a, vm, own, negatives)),
        ),
        (c["pos_within"], (_Term("pos_v2v", v, vm, pos, wneg), _Term("pos_a2a", a, am, pos, wneg))),
        (c["pos_cross"], (_Term("pos_v2a", v, am, pos, wneg), _Term("pos_a2v", a, vm, pos, wneg))),
        (
            c["inst_within"],
            (_Term("inst_v2v", v, vm, own, negatives), _Term("inst_a2a", a, am, own, negatives)),
        ),
    ]
    return _combine(groups, z, temperature, objective)


@torch.no_grad()
def cma_positive_sets(
    video_memory: Tensor,
    audio_memory: Tensor,
    k: int,
    mode: PositiveMode = "consensus",
    chunk_size: int = 1024,
) -> Tensor:
    """Top-k other instances by cross-modal agreement: (N, D), (N, D) -> (N, k) long.

    sim_v = V Vᵀ, sim_a = A Aᵀ; combined = min (consensus), max (union), sim_v (video) or
    sim_a (audio); the instance itself is excluded; rows sorted by decreasing similarity.
    Rows are processed `chunk_size` at a time, so memory peaks at a few (chunk_size, N) blocks.
    """
    n = video_memory.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    if mode not in ("consensus", "union", "video", "audio"):
        raise ValueError(f"mode must be consensus, union, video or audio, got {mode!r}")
    out = torch.empty(n, k, dtype=torch.long, device=video_memory.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        if mode == "video":
            sim = video_memory[start:stop] @ video_memory.T
        elif mode == "audio":
            sim = audio_memory[start:stop] @ audio_memory.T
        else:
            sim_v = video_memory[start:stop] @ video_memory.T
            sim_a = audio_memory[start:stop] @ audio_memory.T
            sim = (
                torch.minimum(sim_v, sim_a) if mode == "consensus" else torch.maximum(sim_v, sim_a)
            )
        rows = torch.arange(stop - start, device=sim.device)
        sim[rows, rows + start] = -math.inf
        out[start:stop] = sim.topk(k, dim=1).indices
    return out


class _MemoryLoss(nn.Module):
    """Holds temperature, objective and the Z estimate (buffer `z`; <= 0 means not yet set)."""

    z: Tensor

    def __init__(self, temperature: float, objective: Objective) -> None:
        super().__init__()
        if objective not in ("nce", "infonce"):
            raise ValueError(f"objective must be 'nce' or 'infonce', got {objective!r}")
        self.temperature = temperature
        self.objective: Objective = objective
        self.register_buffer("z", torch.tensor(0.0))

    @property
    def z_is_set(self) -> bool:
        return bool(self.z > 0)

    def _with_z(
        self, run: Callable[[Tensor | None], tuple[Tensor, dict[str, Tensor]]]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Run with the stored Z; on the first call estimate it (averaged across ranks)."""
        if self.z_is_set:
            return run(self.z)
        loss, terms = run(None)
        return run(self.z) if self._adopt_z(terms) else (loss, terms)

    def _adopt_z(self, terms: dict[str, Tensor]) -> bool:
        """Store the first-call estimate, averaged across ranks; True if it changed under DDP."""
        estimate = all_reduce_mean(terms["z"])
        self.z.copy_(estimate)
        return distributed_world_size() > 1


class AVIDLoss(_MemoryLoss):
    """Module form of `avid_loss`; Z is estimated on the first call and then kept fixed."""

    def __init__(
        self,
        cross_coeff: float = 1.0,
        within_coeff: float = 0.0,
        temperature: float = 0.07,
        objective: Objective = "nce",
        batch_positives: bool = False,
    ) -> None:
        super().__init__(temperature, objective)
        _normalised({"cross": cross_coeff, "within": within_coeff})
        self.cross_coeff = cross_coeff
        self.within_coeff = within_coeff
        self.batch_positives = batch_positives

    def forward(
        self,
        video_emb: Tensor,
        audio_emb: Tensor,
        video_memory: Tensor,
        audio_memory: Tensor,
        ids: Tensor,
        negatives: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Shapes as `avid_loss`; returns (loss, terms)."""

        def run(z: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
            return avid_loss(
                video_emb,
                audio_emb,
                video_memory,
                audio_memory,
                ids,
                negatives,
                z,
                self.cross_coeff,
                self.within_coeff,
                self.temperature,
                objective=self.objective,
                batch_positives=self.batch_positives,
            )

        return self._with_z(run)


class CMALoss(_MemoryLoss):
    """Module form of `cma_loss`; Z is estimated on the first call unless loaded (from AVID)."""

    def __init__(
        self,
        instance_cross_coeff: float = 1.0,
        positive_within_coeff: float = 1.0,
        positive_cross_coeff: float = 0.0,
        instance_within_coeff: float = 0.0,
        temperature: float = 0.07,
        objective: Objective = "nce",
    ) -> None:
        super().__init__(temperature, objective)
        self.coeffs = {
            "instance_cross_coeff": instance_cross_coeff,
            "positive_within_coeff": positive_within_coeff,
            "positive_cross_coeff": positive_cross_coeff,
            "instance_within_coeff": instance_within_coeff,
        }
        _normalised(self.coeffs)

    def forward(
        self,
        video_emb: Tensor,
        audio_emb: Tensor,
        video_memory: Tensor,
        audio_memory: Tensor,
        ids: Tensor,
        negatives: Tensor,
        positives: Tensor,
        within_negatives: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Shapes as `cma_loss`; returns (loss, terms)."""

        def run(z: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
            return cma_loss(
                video_emb,
                audio_emb,
                video_memory,
                audio_memory,
                ids,
                negatives,
                positives,
                within_negatives,
                z,
                temperature=self.temperature,
                objective=self.objective,
                **self.coeffs,
            )

        return self._with_z(run)
