"""AVID / CMA losses checked against hand computations (plain python floats) on tiny inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F

from avid_model.losses import (
    AVIDLoss,
    CMALoss,
    PositiveMode,
    avid_loss,
    cma_loss,
    cma_positive_sets,
)
from avid_model.memory_bank import MemoryBank

Vec = Sequence[float]


def unit(v: Vec) -> Vec:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def dot(a: Vec, b: Vec) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def nce_anchor(x: Vec, pos: list[Vec], neg: list[Vec], z: float, t: float) -> float:
    """-(1/P) Σ_p log(s_p/(s_p + K Z)) - Σ_k log(K Z/(s_k + K Z)), s = exp(x·m/T)."""
    k = len(neg)
    s_pos = [math.exp(dot(x, m) / t) for m in pos]
    s_neg = [math.exp(dot(x, m) / t) for m in neg]
    pos_part = sum(math.log(s / (s + k * z)) for s in s_pos) / len(pos)
    neg_part = sum(math.log(k * z / (s + k * z)) for s in s_neg)
    return -pos_part - neg_part


def infonce_anchor(x: Vec, pos: list[Vec], neg: list[Vec], t: float) -> float:
    """(1/P) Σ_p -log(e_p / (e_p + Σ_k e_k)), e = exp(x·m/T)."""
    total_neg = sum(math.exp(dot(x, m) / t) for m in neg)
    e_pos = [math.exp(dot(x, m) / t) for m in pos]
    return sum(-math.log(e / (e + total_neg)) for e in e_pos) / len(pos)


# Tiny problem: B=2, N=5, D=3, K=2 with explicit vectors.
V_MEM = [unit(v) for v in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 1])]
A_MEM = [unit(v) for v in ([0, 1, 1], [1, 0, 1], [1, 2, 0], [-1, 0, 1], [2, 1, 1])]
V_EMB = [unit([1, 0.5, 0.2]), unit([-0.3, 1, 0.4])]
A_EMB = [unit([0.2, 1, 0.9]), unit([0.7, 0.1, 1])]
IDS = [0, 1]
NEGS = [[2, 4], [3, 0]]
T = 0.5


Tensors6 = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def tensors() -> Tensors6:
    """(video_emb, audio_emb, video_memory, audio_memory, ids, negatives)."""
    f64 = torch.float64
    return (
        torch.tensor(V_EMB, dtype=f64),
        torch.tensor(A_EMB, dtype=f64),
        torch.tensor(V_MEM, dtype=f64),
        torch.tensor(A_MEM, dtype=f64),
        torch.tensor(IDS),
        torch.tensor(NEGS),
    )


def hand_term(emb: list[Vec], mem: list[Vec], z: float, t: float = T) -> float:
    """Batch mean of one AVID direction: positive = own memory row, NEGS as negatives."""
    per = [
        nce_anchor(emb[b], [mem[IDS[b]]], [mem[j] for j in NEGS[b]], z, t) for b in range(len(IDS))
    ]
    return sum(per) / len(per)


def hand_infonce_term(emb: list[Vec], mem: list[Vec], t: float = T) -> float:
    per = [infonce_anchor(emb[b], [mem[IDS[b]]], [mem[j] for j in NEGS[b]], t) for b in range(2)]
    return sum(per) / len(per)


def test_cross_avid_matches_hand_computation() -> None:
    z = 0.8
    loss, terms = avid_loss(*tensors(), z=z, temperature=T)
    v2a, a2v = hand_term(V_EMB, A_MEM, z), hand_term(A_EMB, V_MEM, z)
    assert loss.item() == pytest.approx((v2a + a2v) / 2, rel=1e-12)
    assert terms["v2a"].item() == pytest.approx(v2a, rel=1e-12)
    assert terms["a2v"].item() == pytest.approx(a2v, rel=1e-12)
    assert terms["z"].item() == pytest.approx(z)
    assert set(terms) == {"v2a", "a2v", "z", "pos_sim", "neg_sim"}
    pos_cos = [dot(V_EMB[b], A_MEM[IDS[b]]) for b in range(2)]
    pos_cos += [dot(A_EMB[b], V_MEM[IDS[b]]) for b in range(2)]
    assert terms["pos_sim"].item() == pytest.approx(sum(pos_cos) / 4, rel=1e-12)


def test_default_temperature_value() -> None:
    loss, _ = avid_loss(*tensors(), z=3.0)
    expected = (hand_term(V_EMB, A_MEM, 3.0, 0.07) + hand_term(A_EMB, V_MEM, 3.0, 0.07)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_z_estimated_on_first_term() -> None:
    # Cross-modal present: Z = mean over batch and negatives of exp(v · A[neg] / T).
    expected = sum(math.exp(dot(V_EMB[b], A_MEM[j]) / T) for b in range(2) for j in NEGS[b]) / 4
    loss, terms = avid_loss(*tensors(), z=None, cross_coeff=1, within_coeff=1, temperature=T)
    assert terms["z"].item() == pytest.approx(expected, rel=1e-12)
    assert not terms["z"].requires_grad
    given, _ = avid_loss(*tensors(), z=expected, cross_coeff=1, within_coeff=1, temperature=T)
    assert loss.item() == pytest.approx(given.item(), rel=1e-12)
    # Self-AVID: no cross-modal term, so Z comes from v against the video memory.
    expected_self = (
        sum(math.exp(dot(V_EMB[b], V_MEM[j]) / T) for b in range(2) for j in NEGS[b]) / 4
    )
    _, terms = avid_loss(*tensors(), z=None, cross_coeff=0, within_coeff=1, temperature=T)
    assert terms["z"].item() == pytest.approx(expected_self, rel=1e-12)


@pytest.mark.parametrize(
    ("cx", "cw", "expected_terms"),
    [(0.0, 1.0, {"v2v", "a2a"}), (1.0, 0.0, {"v2a", "a2v"}), (1, 1, {"v2a", "a2v", "v2v", "a2a"})],
)
def test_variants_select_terms(cx: float, cw: float, expected_terms: set[str]) -> None:
    z = 1.3
    loss, terms = avid_loss(*tensors(), z=z, cross_coeff=cx, within_coeff=cw, temperature=T)
    assert set(terms) - {"z", "pos_sim", "neg_sim"} == expected_terms
    cross = (hand_term(V_EMB, A_MEM, z) + hand_term(A_EMB, V_MEM, z)) / 2
    within = (hand_term(V_EMB, V_MEM, z) + hand_term(A_EMB, A_MEM, z)) / 2
    expected = (cx * cross + cw * within) / (cx + cw)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_coefficients_are_normalised() -> None:
    z = 0.9
    a, _ = avid_loss(*tensors(), z=z, cross_coeff=2, within_coeff=2, temperature=T)
    b, _ = avid_loss(*tensors(), z=z, cross_coeff=1, within_coeff=1, temperature=T)
    c, terms = avid_loss(*tensors(), z=z, cross_coeff=3, within_coeff=1, temperature=T)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    cross = (terms["v2a"] + terms["a2v"]).item() / 2
    within = (terms["v2v"] + terms["a2a"]).item() / 2
    assert c.item() == pytest.approx(0.75 * cross + 0.25 * within, rel=1e-12)
    with pytest.raises(ValueError, match="coefficient"):
        avid_loss(*tensors(), z=z, cross_coeff=0, within_coeff=0)


def test_infonce_matches_hand_computation() -> None:
    loss, terms = avid_loss(*tensors(), z=None, temperature=T, objective="infonce")
    v2a, a2v = hand_infonce_term(V_EMB, A_MEM), hand_infonce_term(A_EMB, V_MEM)
    assert terms["v2a"].item() == pytest.approx(v2a, rel=1e-12)
    assert loss.item() == pytest.approx((v2a + a2v) / 2, rel=1e-12)
    assert "z" in terms  # estimated and returned even though infonce does not use it


def test_batch_positives_use_the_other_modality_now_with_gradient() -> None:
    """positives="batch": v->A's positive is the clip's current audio embedding, not A[id], and
    the batch's other clips' audio join the memory negatives."""
    v, a, vm, am, ids, negs = tensors()
    v, a = v.clone().requires_grad_(True), a.clone().requires_grad_(True)
    loss, terms = avid_loss(
        v, a, vm, am, ids, negs, z=None, temperature=T, objective="infonce", batch_positives=True
    )
    per_v = [
        infonce_anchor(V_EMB[b], [A_EMB[b]], [A_MEM[j] for j in NEGS[b]] + [A_EMB[1 - b]], T)
        for b in range(2)
    ]
    per_a = [
        infonce_anchor(A_EMB[b], [V_EMB[b]], [V_MEM[j] for j in NEGS[b]] + [V_EMB[1 - b]], T)
        for b in range(2)
    ]
    assert terms["v2a"].item() == pytest.approx(sum(per_v) / 2, rel=1e-12)
    assert terms["a2v"].item() == pytest.approx(sum(per_a) / 2, rel=1e-12)
    memory_loss, _ = avid_loss(*tensors(), z=None, temperature=T, objective="infonce")
    assert loss.item() != pytest.approx(memory_loss.item())
    loss.backward()
    # The audio embedding gets gradient from v->A's positive, not only from its own a->V term.
    assert a.grad is not None
    assert v.grad is not None
    only_a2v, _ = avid_loss(
        v.detach(), a, vm, am, ids, negs, z=None, temperature=T, objective="infonce"
    )
    (grad_memory,) = torch.autograd.grad(only_a2v, a)
    assert not torch.allclose(a.grad, grad_memory)


def test_batch_positives_never_count_a_clip_of_the_same_video_as_a_negative() -> None:
    """Two clips of instance 0 in one batch: neither is the other's negative."""
    v, a, vm, am, _, _ = tensors()
    ids, negs = torch.tensor([0, 0]), torch.tensor([[2, 4], [3, 1]])
    _, terms = avid_loss(
        v, a, vm, am, ids, negs, z=None, temperature=T, objective="infonce", batch_positives=True
    )
    per_v = [infonce_anchor(V_EMB[b], [A_EMB[b]], [A_MEM[j] for j in negs[b]], T) for b in (0, 1)]
    assert terms["v2a"].item() == pytest.approx(sum(per_v) / 2, rel=1e-12)
    assert math.isfinite(terms["neg_sim"].item())


def test_no_memory_negatives_is_the_symmetric_in_batch_softmax() -> None:
    """negatives (B, 0) with batch positives: CLIP's loss, the batch's other clips as the only
    negatives, and no Z to estimate (it reads 1)."""
    v, a, vm, am, ids, _ = tensors()
    none = torch.empty(2, 0, dtype=torch.long)
    loss, terms = avid_loss(
        v, a, vm, am, ids, none, z=None, temperature=T, objective="infonce", batch_positives=True
    )
    per_v = [infonce_anchor(V_EMB[b], [A_EMB[b]], [A_EMB[1 - b]], T) for b in range(2)]
    per_a = [infonce_anchor(A_EMB[b], [V_EMB[b]], [V_EMB[1 - b]], T) for b in range(2)]
    assert terms["v2a"].item() == pytest.approx(sum(per_v) / 2, rel=1e-12)
    assert loss.item() == pytest.approx((sum(per_v) + sum(per_a)) / 4, rel=1e-12)
    assert terms["z"].item() == 1.0


def test_nce_trivial_solution_value() -> None:
    """Every score equal to Z gives -log(1/(1+K)) - K log(K/(K+1)) ≈ ln K + 1 (the collapse)."""
    k = 64
    emb = F.normalize(torch.ones(2, 3, dtype=torch.float64), dim=1)
    mem = emb[:1].repeat(100, 1)
    negs = torch.randint(0, 100, (2, k))
    loss, _ = avid_loss(emb, emb, mem, mem, torch.tensor([0, 1]), negs, z=None)
    expected = -math.log(1 / (1 + k)) - k * math.log(k / (k + 1))
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(math.log(k) + 1, abs=0.02)


# CMA: N=6 with P=2 positives and Kw=2 within-modal negatives per item.
CV = [*V_MEM, unit([0.5, 0.5, 1])]
CA = [*A_MEM, unit([1, 0, -1])]
POS = [[3, 5], [4, 2]]
WNEG = [[1, 2], [5, 3]]


Tensors8 = tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
]


def cma_tensors() -> Tensors8:
    """avid_loss's tensors with N=6 memories, then positives (B, P) and within_negatives."""
    v, a, _, _, ids, negs = tensors()
    vm, am = torch.tensor(CV, dtype=torch.float64), torch.tensor(CA, dtype=torch.float64)
    return v, a, vm, am, ids, negs, torch.tensor(POS), torch.tensor(WNEG)


def hand_cma_term(emb: list[Vec], mem: list[Vec], z: float, positive_terms: bool) -> float:
    per = []
    for b in range(2):
        pos = [mem[j] for j in POS[b]] if positive_terms else [mem[IDS[b]]]
        neg = [mem[j] for j in (WNEG[b] if positive_terms else NEGS[b])]
        per.append(nce_anchor(emb[b], pos, neg, z, T))
    return sum(per) / 2


def test_cma_matches_hand_computation() -> None:
    z = 1.7
    loss, terms = cma_loss(
        *cma_tensors(),
        z=z,
        temperature=T,
        instance_cross_coeff=1.0,
        positive_within_coeff=2.0,
        positive_cross_coeff=0.5,
        instance_within_coeff=0.5,
    )
    inst_cross = (hand_cma_term(V_EMB, CA, z, False) + hand_cma_term(A_EMB, CV, z, False)) / 2
    pos_within = (hand_cma_term(V_EMB, CV, z, True) + hand_cma_term(A_EMB, CA, z, True)) / 2
    pos_cross = (hand_cma_term(V_EMB, CA, z, True) + hand_cma_term(A_EMB, CV, z, True)) / 2
    inst_within = (hand_cma_term(V_EMB, CV, z, False) + hand_cma_term(A_EMB, CA, z, False)) / 2
    expected = (1.0 * inst_cross + 2.0 * pos_within + 0.5 * pos_cross + 0.5 * inst_within) / 4.0
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert terms["pos_v2v"].item() == pytest.approx(hand_cma_term(V_EMB, CV, z, True), rel=1e-12)
    assert terms["pos_a2v"].item() == pytest.approx(hand_cma_term(A_EMB, CV, z, True), rel=1e-12)
    assert len(set(terms) - {"z", "pos_sim", "neg_sim"}) == 8


def test_cma_defaults_and_z() -> None:
    _, terms = cma_loss(*cma_tensors(), z=None, temperature=T)
    assert set(terms) - {"z", "pos_sim", "neg_sim"} == {
        "inst_v2a",
        "inst_a2v",
        "pos_v2v",
        "pos_a2a",
    }
    expected = sum(math.exp(dot(V_EMB[b], CA[j]) / T) for b in range(2) for j in NEGS[b]) / 4
    assert terms["z"].item() == pytest.approx(expected, rel=1e-12)
    # Without the instance cross-modal term, Z comes from v against V[within negatives].
    _, terms = cma_loss(*cma_tensors(), z=None, temperature=T, instance_cross_coeff=0.0)
    expected = sum(math.exp(dot(V_EMB[b], CV[j]) / T) for b in range(2) for j in WNEG[b]) / 4
    assert terms["z"].item() == pytest.approx(expected, rel=1e-12)
    assert set(terms) - {"z", "pos_sim", "neg_sim"} == {"pos_v2v", "pos_a2a"}


def test_cma_infonce_matches_hand_computation() -> None:
    loss, terms = cma_loss(*cma_tensors(), z=1.0, temperature=T, objective="infonce")

    def term(emb: list[Vec], mem: list[Vec], positive_terms: bool) -> float:
        per = []
        for b in range(2):
            pos = [mem[j] for j in POS[b]] if positive_terms else [mem[IDS[b]]]
            neg = [mem[j] for j in (WNEG[b] if positive_terms else NEGS[b])]
            per.append(infonce_anchor(emb[b], pos, neg, T))
        return sum(per) / 2

    inst_cross = (term(V_EMB, CA, False) + term(A_EMB, CV, False)) / 2
    pos_within = (term(V_EMB, CV, True) + term(A_EMB, CA, True)) / 2
    assert terms["pos_a2a"].item() == pytest.approx(term(A_EMB, CA, True), rel=1e-12)
    assert loss.item() == pytest.approx((inst_cross + pos_within) / 2, rel=1e-12)


def _angles(degrees: list[float]) -> torch.Tensor:
    rad = [math.radians(d) for d in degrees]
    return torch.tensor([[math.cos(r), math.sin(r)] for r in rad], dtype=torch.float64)


def _reference_positive_sets(
    v: torch.Tensor, a: torch.Tensor, k: int, mode: str
) -> list[list[int]]:
    vl, al = v.tolist(), a.tolist()
    out = []
    for i in range(len(vl)):
        scored = []
        for j in range(len(vl)):
            if j == i:
                continue
            sv, sa = dot(vl[i], vl[j]), dot(al[i], al[j])
            combined = {"consensus": min(sv, sa), "union": max(sv, sa), "video": sv, "audio": sa}
            scored.append((combined[mode], j))
        out.append([j for _, j in sorted(scored, reverse=True)[:k]])
    return out


def test_positive_sets_hand_made_bank() -> None:
    v = _angles([0, 10, 30, 100, 215])
    a = _angles([0, 50, 12, 105, 300])
    # Row 0: video nearest is 1 (10°), audio nearest is 2 (12°); consensus min(cos 30°, cos 12°)
    # beats min(cos 10°, cos 50°); union max(cos 10°, cos 50°) beats max(cos 30°, cos 12°).
    assert cma_positive_sets(v, a, 1, "video")[0].tolist() == [1]
    assert cma_positive_sets(v, a, 1, "audio")[0].tolist() == [2]
    assert cma_positive_sets(v, a, 1, "consensus")[0].tolist() == [2]
    assert cma_positive_sets(v, a, 1, "union")[0].tolist() == [1]
    modes: list[PositiveMode] = ["consensus", "union", "video", "audio"]
    for mode in modes:
        got = cma_positive_sets(v, a, 3, mode)
        assert got.tolist() == _reference_positive_sets(v, a, 3, mode)


@pytest.mark.parametrize("mode", ["consensus", "union", "video", "audio"])
def test_positive_sets_random_bank_and_chunking(mode: PositiveMode) -> None:
    g = torch.Generator().manual_seed(3)
    v = F.normalize(torch.randn(23, 4, generator=g, dtype=torch.float64), dim=1)
    a = F.normalize(torch.randn(23, 4, generator=g, dtype=torch.float64), dim=1)
    expected = _reference_positive_sets(v, a, 5, mode)
    for chunk in (1, 4, 7, 23, 1000):
        got = cma_positive_sets(v, a, 5, mode, chunk_size=chunk)
        assert got.dtype == torch.long
        assert got.tolist() == expected
    with pytest.raises(ValueError, match="k must be"):
        cma_positive_sets(v, a, 23)


def test_module_keeps_z_from_first_call() -> None:
    crit = AVIDLoss(temperature=T).double()
    assert not crit.z_is_set
    _, first = crit(*tensors())
    assert crit.z_is_set
    assert crit.z.item() == pytest.approx(first["z"].item())
    v, *rest = tensors()
    loss, second = crit(v.flip(0), *rest)
    assert second["z"].item() == pytest.approx(first["z"].item())
    given, _ = avid_loss(v.flip(0), *rest, z=first["z"], temperature=T)
    assert loss.item() == pytest.approx(given.item(), rel=1e-12)
    restored = AVIDLoss(temperature=T)
    restored.load_state_dict(crit.state_dict())
    assert restored.z_is_set
    assert restored.z.item() == pytest.approx(first["z"].item())


def _train(objective: str, cma: bool, steps: int = 40) -> list[float]:
    torch.manual_seed(0)
    n, b, dim_in, dim = 32, 16, 12, 8
    gen = torch.Generator().manual_seed(1)
    x_v, x_a = torch.randn(n, dim_in), torch.randn(n, dim_in)
    enc_v, enc_a = torch.nn.Linear(dim_in, dim), torch.nn.Linear(dim_in, dim)
    bank = MemoryBank(n, dim, generator=gen)
    crit: torch.nn.Module = (
        CMALoss(objective=objective)  # type: ignore[arg-type]
        if cma
        else AVIDLoss(objective=objective)  # type: ignore[arg-type]
    )
    opt = torch.optim.Adam([*enc_v.parameters(), *enc_a.parameters()], lr=1e-2)
    losses = []
    for step in range(steps):
        if cma and step % 20 == 0:
            bank.set_positive_sets(cma_positive_sets(bank.video, bank.audio, 4))
        ids = torch.randperm(n, generator=gen)[:b]
        v = F.normalize(enc_v(x_v[ids]), dim=1)
        a = F.normalize(enc_a(x_a[ids]), dim=1)
        negs = bank.sample_negatives(ids, 16, generator=gen)
        args = [v, a, bank.video, bank.audio, ids, negs]
        if cma:
            wneg = bank.sample_negatives(ids, 8, generator=gen, exclude_positives=True)
            args += [bank.positive_set[ids], wneg]
        loss, _ = crit(*args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bank.update(v, a, ids)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("objective", ["nce", "infonce"])
@pytest.mark.parametrize("cma", [False, True], ids=["avid", "cma"])
def test_loss_falls_when_optimised(objective: str, cma: bool) -> None:
    losses = _train(objective, cma)
    assert all(math.isfinite(x) for x in losses)
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.8 * start, (start, end)


def test_logits_stay_float32_under_autocast() -> None:
    v, a, vm, am, ids, negs = (t.float() if t.is_floating_point() else t for t in tensors())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = avid_loss(v.bfloat16(), a.bfloat16(), vm, am, ids, negs, z=None)
    assert loss.dtype == torch.float32
    assert math.isfinite(loss.item())
    assert math.isfinite(terms["z"].item())
