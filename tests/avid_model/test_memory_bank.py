"""MemoryBank: initialisation, negative sampling, momentum update, checkpoints and DDP (gloo)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from avid_model.losses import AVIDLoss, avid_loss
from avid_model.memory_bank import MemoryBank, all_reduce_mean


def test_init_is_normalised_and_seeded() -> None:
    bank = MemoryBank(10, 6, generator=torch.Generator().manual_seed(0))
    assert bank.video.shape == bank.audio.shape == (10, 6)
    torch.testing.assert_close(bank.video.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(bank.audio.norm(dim=1), torch.ones(10))
    same = MemoryBank(10, 6, generator=torch.Generator().manual_seed(0))
    other = MemoryBank(10, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(bank.video, same.video)
    assert torch.equal(bank.audio, same.audio)
    assert not torch.equal(bank.video, other.video)
    assert not torch.equal(bank.video, bank.audio)
    assert not bank.has_positive_sets


def test_negatives_never_self_and_uniform() -> None:
    n, k = 10, 9000
    bank = MemoryBank(n, 4)
    ids = torch.arange(n)
    negs = bank.sample_negatives(ids, k, generator=torch.Generator().manual_seed(0))
    assert negs.shape == (n, k)
    assert negs.dtype == torch.long
    assert not bool((negs == ids[:, None]).any())
    assert int(negs.min()) >= 0
    assert int(negs.max()) < n
    counts = torch.zeros(n, n).scatter_add_(1, negs, torch.ones(n, k))
    expected = k / (n - 1)  # 1000 per other instance; binomial sd ≈ 30
    off_diag = counts[~torch.eye(n, dtype=torch.bool)]
    assert float((off_diag - expected).abs().max()) < 6 * math.sqrt(expected)
    assert float(counts.diagonal().sum()) == 0


def test_negatives_deterministic_given_generator() -> None:
    bank = MemoryBank(50, 4)
    ids = torch.tensor([3, 7, 7, 49])
    a = bank.sample_negatives(ids, 32, generator=torch.Generator().manual_seed(5))
    b = bank.sample_negatives(ids, 32, generator=torch.Generator().manual_seed(5))
    c = bank.sample_negatives(ids, 32, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_two_instances_always_draw_the_other() -> None:
    bank = MemoryBank(2, 4)
    negs = bank.sample_negatives(torch.tensor([0, 1, 1]), 20)
    assert negs.tolist() == [[1] * 20, [0] * 20, [0] * 20]


def test_negatives_exclude_positive_sets() -> None:
    n, k = 12, 6000
    bank = MemoryBank(n, 4)
    g = torch.Generator().manual_seed(0)
    positives = torch.stack([torch.randperm(n, generator=g)[:4] for _ in range(n)])
    positives[0] = torch.tensor([5, 5, 0, 11])  # duplicates and the instance itself
    bank.set_positive_sets(positives)
    ids = torch.arange(n)
    negs = bank.sample_negatives(ids, k, generator=g, exclude_positives=True)
    for i in range(n):
        excluded = {i, *positives[i].tolist()}
        allowed = sorted(set(range(n)) - excluded)
        counts = torch.bincount(negs[i], minlength=n)
        assert all(int(counts[j]) == 0 for j in excluded)
        expected = k / len(allowed)
        assert all(abs(int(counts[j]) - expected) < 6 * math.sqrt(expected) for j in allowed)
    with pytest.raises(RuntimeError, match="no positive sets"):
        MemoryBank(n, 4).sample_negatives(ids, 3, exclude_positives=True)


def test_no_candidates_left_raises() -> None:
    bank = MemoryBank(3, 2)
    bank.set_positive_sets(torch.tensor([[1, 2], [0, 2], [0, 1]]))
    with pytest.raises(ValueError, match="no candidate"):
        bank.sample_negatives(torch.tensor([0]), 2, exclude_positives=True)


def _normalize(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def test_momentum_update_by_hand() -> None:
    bank = MemoryBank(4, 2).double()
    bank.video.copy_(
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64)
    )
    bank.audio.copy_(
        torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6], [0.0, -1.0]], dtype=torch.float64)
    )
    before_video, before_audio = bank.video.clone(), bank.audio.clone()
    v = torch.tensor([[0.0, 1.0], [0.6, -0.8]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[1.0, 0.0], [-0.8, 0.6]], dtype=torch.float64)
    bank.update(v, a, torch.tensor([0, 2]))
    # id 0 video: normalize(0.5*(1,0) + 0.5*(0,1)) = (1/√2, 1/√2)
    assert bank.video[0].tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2)])
    # id 2 video: normalize(0.5*(0.6,0.8) + 0.5*(0.6,-0.8)) = (1, 0)
    assert bank.video[2].tolist() == pytest.approx([1.0, 0.0])
    # id 2 audio: normalize(0.5*(0.8,0.6) + 0.5*(-0.8,0.6)) = (0, 1)
    assert bank.audio[2].tolist() == pytest.approx([0.0, 1.0])
    assert torch.equal(bank.video[[1, 3]], before_video[[1, 3]])
    assert torch.equal(bank.audio[[1, 3]], before_audio[[1, 3]])
    assert not bank.video.requires_grad
    # momentum 0.9: normalize(0.9*m + 0.1*e)
    bank.update(v[:1], a[:1], torch.tensor([1]), momentum=0.9)
    expected = _normalize([0.9 * 0.0 + 0.1 * 0.0, 0.9 * 1.0 + 0.1 * 1.0])
    assert bank.video[1].tolist() == pytest.approx(expected)
    expected = _normalize([0.9 * 1.0 + 0.1 * 1.0, 0.9 * 0.0 + 0.1 * 0.0])
    assert bank.audio[1].tolist() == pytest.approx(expected)


def test_duplicate_ids_last_occurrence_wins() -> None:
    bank = MemoryBank(3, 2).double()
    bank.video.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    emb = torch.tensor([[0.0, 1.0], [0.0, -1.0], [0.6, 0.8]], dtype=torch.float64)
    bank.update(emb, emb, torch.tensor([2, 1, 2]))
    # id 2 takes its last row (0.6, 0.8): normalize(0.5*(1,0) + 0.5*(0.6,0.8)) = (0.8,0.4)/|.|
    assert bank.video[2].tolist() == pytest.approx(_normalize([0.8, 0.4]))


def test_state_dict_round_trip_with_positive_sets() -> None:
    bank = MemoryBank(6, 3, generator=torch.Generator().manual_seed(0))
    bank.set_positive_sets(torch.tensor([[1, 2, 3]] * 6, dtype=torch.int32))
    assert bank.positive_set.dtype == torch.long
    state = bank.state_dict()
    assert set(state) == {"video", "audio", "positive_set"}
    fresh = MemoryBank(6, 3, generator=torch.Generator().manual_seed(9))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.video, bank.video)
    assert torch.equal(fresh.audio, bank.audio)
    assert torch.equal(fresh.positive_set, bank.positive_set)
    assert fresh.has_positive_sets
    with pytest.raises(ValueError, match="positive sets must be"):
        bank.set_positive_sets(torch.zeros(5, 2, dtype=torch.long))


# --- DDP: two CPU processes on gloo -------------------------------------------------------------

N, D = 8, 4
RANK_IDS = [[0, 1, 2], [2, 5, 6, 7]]  # different sizes; id 2 on both ranks (rank 1's wins)


def _rank_embeddings(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    size = len(RANK_IDS[rank])
    v = F.normalize(torch.randn(size, D, generator=g), dim=1)
    a = F.normalize(torch.randn(size, D, generator=g), dim=1)
    return v, a


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        bank = MemoryBank(N, D, generator=torch.Generator().manual_seed(0))
        v, a = _rank_embeddings(rank)
        ids = torch.tensor(RANK_IDS[rank])
        crit = AVIDLoss()
        negs = bank.sample_negatives(ids, 3, generator=torch.Generator().manual_seed(rank))
        _, local = avid_loss(v, a, bank.video, bank.audio, ids, negs, z=None)
        _, terms = crit(v, a, bank.video, bank.audio, ids, negs)
        bank.update(v, a, ids)
        mean = all_reduce_mean(torch.tensor(float(rank + 1)))
        torch.save(
            {
                "bank": bank.state_dict(),
                "mean": mean,
                "z": crit.z,
                "local_z": local["z"],
                "terms_z": terms["z"],
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_update_keeps_replicas_identical(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    reference = MemoryBank(N, D, generator=torch.Generator().manual_seed(0))
    embeddings = [_rank_embeddings(r) for r in range(2)]
    reference.update(
        torch.cat([e[0] for e in embeddings]),
        torch.cat([e[1] for e in embeddings]),
        torch.tensor(RANK_IDS[0] + RANK_IDS[1]),
    )
    for result in results:
        torch.testing.assert_close(result["bank"]["video"], reference.video)
        torch.testing.assert_close(result["bank"]["audio"], reference.audio)
        assert result["mean"].item() == pytest.approx(1.5)
    assert torch.equal(results[0]["bank"]["video"], results[1]["bank"]["video"])
    # The loss module's Z is the mean of the ranks' first-batch estimates, the same on both.
    mean_z = (results[0]["local_z"] + results[1]["local_z"]).item() / 2
    assert results[0]["local_z"].item() != pytest.approx(results[1]["local_z"].item())
    for result in results:
        assert result["z"].item() == pytest.approx(mean_z, rel=1e-6)
        assert result["terms_z"].item() == pytest.approx(mean_z, rel=1e-6)


def test_all_reduce_mean_single_process_is_identity() -> None:
    t = torch.tensor(2.5)
    assert all_reduce_mean(t) is t
