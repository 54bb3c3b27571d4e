"""Evaluation metrics on embeddings and features: retrieval, kNN and linear probes.

Pure functions over tensors / arrays. Retrieval uses cosine similarity of unit vectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def instance_recall(
    queries: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]
) -> dict[str, float]:
    """Instance-level retrieval: query i's true match is target i. queries, targets (N, D).

    Returns R@k for each k (the fraction of queries whose match ranks in the top k), the
    median rank (1 = first) and chance R@k = k / N.
    """
    sims = queries @ targets.T  # (N, N)
    true = sims.diagonal()[:, None]
    ranks = (sims > true).sum(dim=1) + 1  # ties count in the query's favour
    n = queries.shape[0]
    out = {f"R@{k}": float((ranks <= k).float().mean()) for k in ks}
    out.update({f"chance R@{k}": min(1.0, k / n) for k in ks})
    out["median rank"] = float(ranks.float().median())
    return out


def class_retrieval(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    targets: torch.Tensor,
    target_labels: torch.Tensor,
    ks: tuple[int, ...],
    exclude_same_index: bool = False,
) -> dict[str, float]:
    """Class-level retrieval: a retrieved target is relevant when its label equals the query's.

    Returns precision@k for each k and mAP (mean over queries of the average precision over
    the whole ranked list); chance P@k is the mean fraction of relevant targets.
    ``exclude_same_index`` drops target i for query i (same set, same clip).
    """
    sims = queries @ targets.T
    if exclude_same_index:
        sims.fill_diagonal_(-torch.inf)
    order = sims.argsort(dim=1, descending=True)
    relevant = (target_labels[order] == query_labels[:, None]).float()  # (Q, N) ranked
    if exclude_same_index:
        relevant = relevant[:, :-1]  # the excluded item ranks last
    out = {f"P@{k}": float(relevant[:, :k].mean()) for k in ks}
    hits = relevant.cumsum(dim=1)
    ranks = torch.arange(1, relevant.shape[1] + 1, dtype=torch.float32)
    n_rel = relevant.sum(dim=1).clamp_min(1.0)
    out["mAP"] = float(((hits / ranks) * relevant).sum(dim=1).div(n_rel).mean())
    out["chance P@k"] = float(relevant.mean())
    return out


def knn_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 10,
) -> float:
    """Cosine kNN classification accuracy (majority vote weighted by similarity)."""
    train_n, test_n = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    sims = test_n @ train_n.T
    k = min(k, train.shape[0])
    top, idx = sims.topk(k, dim=1)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    votes = torch.zeros(test.shape[0], classes)
    votes.scatter_add_(1, train_labels[idx], top.clamp_min(0) + 1e-6)
    return float((votes.argmax(dim=1) == test_labels).float().mean())


def linear_probe_accuracy(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    *,
    c: float = 1.0,
    seed: int = 0,
) -> float:
    """Accuracy of a standardised multinomial logistic regression trained on frozen features."""
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed)
    )
    classifier.fit(train, train_labels)
    return float(classifier.score(test, test_labels))
