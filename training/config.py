"""Training run configuration: YAML files under ``configs/`` with ``--set key=value`` overrides.

The configuration is a tree of frozen (pydantic) dataclasses: unknown keys and wrong types are
errors that name the key. ``--set optim.lr=1e-4`` addresses nested fields with dots; values are
parsed as YAML (``--set data.cache=true``, ``--set loss.cma.mode=union``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says why."""


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    """Where the clips come from and how they are cut and augmented."""

    manifest: str = ""  # manifest.jsonl / .csv, or a folder of videos
    split: str = "train"  # manifest rows of this split (ignored for a plain folder)
    clips_per_video: int = Field(default=1, ge=1)
    max_desync: float = Field(default=0.5, ge=0.0)  # video start within [a - d, a + 2] s
    augment: bool = True
    # "msc+color" ranges (AVID_SPEC §2 defaults); ignored when augment is false.
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip_p: float = Field(default=0.5, ge=0.0, le=1.0)
    # The colour jitter's hue range (0.2 in the spec; 0 skips torchvision's RGB -> HSV -> RGB
    # round trip, about half of each training item's CPU time at 32 px).
    hue: float = Field(default=0.2, ge=0.0, le=0.5)
    # Probability that a clip's sound passes through a random telephone line or room (not the
    # spec: for voices recorded outside espeak-ng; training/augment.py random_channel).
    channel_p: float = Field(default=0.0, ge=0.0, le=1.0)
    cache: bool = False  # keep decoded clips in memory (small data sets)
    workers: int = Field(default=2, ge=0)
    stats_clips: int = Field(default=256, ge=1)  # clips used for spectrogram statistics

    @field_validator("crop_scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 1.0:
            raise ValueError(f"must satisfy 0 < low <= high <= 1, got {value}")
        return value


@dataclass(frozen=True, config=_STRICT)
class CMAConfig:
    """AVID+CMA (AVID_SPEC §4): positive sets and the term weights."""

    init_from: str = ""  # AVID run directory (or run checkpoint file) to start from
    pos_k: int = Field(default=32, ge=1)
    within_negatives: int = Field(default=64, ge=1)
    mode: Literal["consensus", "union", "video", "audio"] = "consensus"
    resample_freq: int = Field(default=5, ge=1)  # epochs between positive-set updates
    instance_cross_coeff: float = Field(default=1.0, ge=0.0)
    positive_within_coeff: float = Field(default=1.0, ge=0.0)
    positive_cross_coeff: float = Field(default=0.0, ge=0.0)
    instance_within_coeff: float = Field(default=0.0, ge=0.0)


@dataclass(frozen=True, config=_STRICT)
class LossConfig:
    method: Literal["avid", "cma", "avc", "supervised"] = "avid"
    objective: Literal["nce", "infonce"] = "nce"
    cross_coeff: float = Field(default=1.0, ge=0.0)  # Cross-AVID (1, 0); Joint (1, 1)
    within_coeff: float = Field(default=0.0, ge=0.0)  # Self-AVID (0, 1)
    temperature: float = Field(default=0.07, gt=0.0)
    # Memory-bank negatives per anchor. 0 (with positives="batch" and the infonce objective):
    # none, only the batch's other instances, i.e. CLIP's symmetric in-batch softmax (not the
    # paper; the bank is still written, for CMA and the checkpoint).
    negatives: int = Field(default=1024, ge=0)
    momentum: float = Field(default=0.5, ge=0.0, lt=1.0)  # memory update
    # AVID's cross-modal positive: "memory" (the paper: the other modality's memory row) or
    # "batch" (its current embedding of the same clip, with gradient; negatives stay memory rows).
    positives: Literal["memory", "batch"] = "memory"
    # NCE only: re-estimate Z once after this many steps (0: the paper's first-batch Z only).
    z_reestimate_step: int = Field(default=0, ge=0)
    cma: CMAConfig = Field(default_factory=CMAConfig)

    def __post_init__(self) -> None:
        if self.negatives == 0 and self.method in ("avid", "cma"):
            if self.method == "cma" or self.positives != "batch" or self.objective != "infonce":
                raise ValueError(
                    "loss.negatives=0 (in-batch negatives only) needs method avid, "
                    "positives batch and objective infonce"
                )
            if self.within_coeff > 0:
                raise ValueError(
                    "loss.negatives=0 leaves the within-modal terms no negatives: "
                    "set within_coeff to 0"
                )


@dataclass(frozen=True, config=_STRICT)
class OptimConfig:
    lr: float = Field(default=2e-4, gt=0.0)
    weight_decay: float = Field(default=1e-5, ge=0.0)
    batch_size: int = Field(default=256, ge=2)  # global, split across ranks
    epochs: int = Field(default=30, ge=1)
    grad_clip: float = Field(default=0.0, ge=0.0)  # 0: off
    # "constant" (the paper's recipe at this scale) or "cosine": linear warm-up over
    # warmup_steps, then cosine decay to 0 over the run, whose end is whichever of the epoch cap
    # and run.max_minutes comes first (training/schedule.py).
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)


@dataclass(frozen=True, config=_STRICT)
class RunConfig:
    """Where the run goes, on what, and what it logs.

    Every ``log_every`` steps a ``step`` event holds the loss, its terms and the batch's
    ``video_spread`` / ``audio_spread`` (mean cosine between different clips' embeddings).
    """

    out_dir: str = "runs/avid"
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    bf16: bool = True  # autocast on CUDA (CPU training stays fp32)
    channels_last: bool = True  # on CUDA
    compile: bool = False
    log_every: int = Field(default=10, ge=1)
    tensorboard: bool = False
    progress: bool = True
    max_minutes: float = Field(default=0.0, ge=0.0)  # wall-clock budget; 0: none
    resume: bool = True  # continue from out_dir/checkpoint.pt when it exists
    threads: int = Field(default=0, ge=0)  # CPU threads; 0: torch's default
    # Held-out monitor (training/monitor.py), on the main rank at each epoch's end and at a
    # time-budget stop: the first monitor_clips records of the manifest's monitor_split, embedded
    # with test-time clips -> a "monitor" log event (a2v / v2a R@1, R@10 against chance, mean
    # cosine between different clips per modality). 0 clips, or a split with fewer than 2
    # records, turns it off. A modality's mean cosine above collapse_cosine writes a "collapse"
    # event and a warning.
    monitor_split: str = "val"
    monitor_clips: int = Field(default=256, ge=0)
    collapse_cosine: float = Field(default=0.95, ge=-1.0, le=1.0)


@dataclass(frozen=True, config=_STRICT)
class ModelSection:
    name: str = "avid-tiny"
    # Preprocessing overrides; 0 keeps the registered configuration's value.
    crop_size: int = Field(default=0, ge=0)
    clip_frames: int = Field(default=0, ge=0)  # frames in one video clip
    fps: float = Field(default=0.0, ge=0.0)  # frame rate the clip is sampled at
    # Training only, for an audio tower with a spectrum path ("conv2d-10+spectrum"): the
    # probability that a clip's spectrum features are dropped, so Conv2D-10 learns too
    # (avid_model.audio_encoder.Conv2D10Spectrum.path_dropout). Not saved with the model.
    spectrum_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


@dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    run: RunConfig = Field(default_factory=RunConfig)


_ADAPTER = TypeAdapter(TrainConfig)


def _apply_override(tree: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {assignment!r}: value is not valid YAML: {exc}") from exc


def build_config(tree: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Validate a nested dict (plus ``key=value`` overrides) into a ``TrainConfig``."""
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(tree)) or {}
    for assignment in overrides:
        _apply_override(merged, assignment)
    try:
        return _ADAPTER.validate_python(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML run configuration and apply ``key=value`` overrides."""
    source = Path(path)
    try:
        tree = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {source}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{source} must hold a mapping of sections, not {type(tree).__name__}")
    return build_config(tree, overrides)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    result: dict[str, Any] = _ADAPTER.dump_python(config, mode="json")
    return result
