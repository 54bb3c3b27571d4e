"""Run checkpoints for exact resume: weights, optimiser, memory banks, Z, positive sets,
progress and random-number state, in one ``torch.save`` file readable with
``weights_only=True`` (plain tensors, numbers, strings, lists and dicts: nothing unpickled)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from avid_model.checkpoint import atomic_writer

RUN_FORMAT = "avid-run"
RUN_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"


class RunStateError(Exception):
    """A run checkpoint that is missing or cannot be used."""


def rng_state(sampler: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "sampler": sampler.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], sampler: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    sampler.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_state(run_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write ``checkpoint.pt`` (temp file, fsync, rename)."""
    path = run_dir / CHECKPOINT_FILE
    payload = {"format": RUN_FORMAT, "version": RUN_VERSION, **state}
    with atomic_writer(path) as handle:
        torch.save(payload, handle)
    return path


def load_run_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run checkpoint from a run directory or the file itself (``weights_only=True``)."""
    source = Path(path)
    if source.is_dir():
        source = source / CHECKPOINT_FILE
    if not source.is_file():
        raise RunStateError(f"no run checkpoint at {path}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise RunStateError(f"cannot load run checkpoint {source}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != RUN_FORMAT:
        raise RunStateError(f"{source} is not an {RUN_FORMAT} checkpoint")
    if state.get("version") != RUN_VERSION:
        raise RunStateError(f"{source} has run-checkpoint version {state.get('version')!r}")
    return state
