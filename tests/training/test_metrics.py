"""Retrieval, kNN and probe metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.metrics import class_retrieval, instance_recall, knn_accuracy, linear_probe_accuracy


def test_instance_recall_by_hand() -> None:
    # 3 items on a circle; queries are rotated so that item 0's match ranks 1st, item 1's 2nd,
    # item 2's 3rd.
    targets = torch.eye(3)
    queries = torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.5, 0.0], [0.9, 0.8, 0.1]])
    out = instance_recall(F.normalize(queries, dim=1), targets, (1, 2))
    assert out["R@1"] == pytest.approx(1 / 3)
    assert out["R@2"] == pytest.approx(2 / 3)
    assert out["chance R@1"] == pytest.approx(1 / 3)
    assert out["median rank"] == 2


def test_class_retrieval_precision_and_map_by_hand() -> None:
    # One query (label 0) against 4 targets ranked by similarity: labels 0, 1, 0, 1.
    query = torch.tensor([[1.0, 0.0]])
    targets = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 1, 0, 1])
    out = class_retrieval(query, torch.tensor([0]), targets, labels, (1, 2, 4))
    assert out["P@1"] == 1.0
    assert out["P@2"] == 0.5
    assert out["P@4"] == 0.5
    # AP = (1/1 + 2/3) / 2
    assert out["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["chance P@k"] == 0.5


def test_class_retrieval_excludes_the_query_clip() -> None:
    x = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 1, 1])
    out = class_retrieval(x, labels, x, labels, (1,), exclude_same_index=True)
    # item 0 -> nearest other is item 1 (label 1: miss); item 1 -> item 0 (miss); item 2 ->
    # item 1 (hit)
    assert out["P@1"] == pytest.approx(1 / 3)


def test_knn_accuracy() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [1.0, 0.0]])
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1, 1]), k=2) == pytest.approx(2 / 3)


def test_linear_probe_separable_vs_random() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    separable = rng.normal(size=(300, 8)) + 4 * np.eye(3, 8)[labels]
    assert (
        linear_probe_accuracy(separable[:200], labels[:200], separable[200:], labels[200:]) > 0.95
    )
    noise = rng.normal(size=(300, 8))
    assert linear_probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:]) < 0.6
