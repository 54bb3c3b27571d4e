"""``avid export RUN_DIR OUT``: the serving checkpoint of a training run.

Weights, model configuration, preprocessing and the training set's spectrogram statistics go
into the project's checkpoint format (safetensors + JSON); the memory banks stay in the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from avid_model.checkpoint import save_checkpoint
from avid_model.features import PreprocessConfig, SpectrogramStats
from avid_model.model import AVIDModel
from avid_model.registry import model_entry
from training.run_state import load_run_state


def model_from_run(run: str | os.PathLike[str]) -> tuple[AVIDModel, dict[str, Any]]:
    """The run's model (eval mode) with its preprocessing and statistics, and the run state."""
    state = load_run_state(run)
    model = AVIDModel(
        model_entry(state["model_name"]).config,
        PreprocessConfig.from_dict(state["preprocess"]),
        SpectrogramStats.from_dict(state["spectrogram_stats"]),
    )
    model.load_state_dict(state["model"])
    return model.eval(), state


def export_run(run: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the serving checkpoint of ``run`` to the directory ``out``; returns its metadata."""
    model, state = model_from_run(run)
    loss = state["config"]["loss"]
    extra = {
        "source": "training-run",
        "run_dir": str(Path(run).resolve()),
        "method": loss["method"],
        "objective": loss["objective"],
        "cross_coeff": loss["cross_coeff"],
        "within_coeff": loss["within_coeff"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "data": state["config"]["data"]["manifest"],
    }
    return save_checkpoint(model, out, extra=extra)
