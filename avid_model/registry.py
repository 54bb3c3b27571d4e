"""Named model configurations: ``create_model(name)``, ``list_models()`` (timm-style registry)."""

from __future__ import annotations

from dataclasses import dataclass

from avid_model.features import PreprocessConfig
from avid_model.model import AVIDModel, ModelConfig


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the choices."""


@dataclass(frozen=True)
class ModelEntry:
    config: ModelConfig
    preprocess: PreprocessConfig


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(config: ModelConfig, preprocess: PreprocessConfig | None = None) -> None:
    """Add a named configuration; a name can be registered once."""
    if config.name in _REGISTRY:
        raise ValueError(f"model {config.name!r} is already registered")
    _REGISTRY[config.name] = ModelEntry(config, preprocess or PreprocessConfig())


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(list_models())
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {choices}") from None


def create_model(name: str) -> AVIDModel:
    """A freshly initialised model of a registered configuration, in training mode."""
    entry = model_entry(name)
    return AVIDModel(entry.config, entry.preprocess)


register_model(
    ModelConfig(
        name="avid-r2p1d18",
        description="The paper's model: R(2+1)D-18 video, Conv2D-10 audio, 21.3M parameters.",
    )
)
register_model(
    ModelConfig(
        name="avid-tiny",
        video_widths=(16, 16, 32, 64, 128),
        audio_widths=(16, 16, 32, 64, 128),
        head_hidden=128,
        description="Same structure, 1/4 of the widths: for CPU tests, demos and small runs.",
    )
)
register_model(
    ModelConfig(
        name="avid-lite",
        video_arch="conv2plus1d-4",
        head_norm="batch",
        video_widths=(32, 64, 64, 128),
        audio_widths=(16, 16, 32, 64, 128),
        head_hidden=128,
        description=(
            "CPU-sized: a 4-layer (2+1)D video CNN on frames and their differences at 32 px, "
            "avid-tiny's audio tower on a 16 kHz spectrogram; the one that learns AV-Digits "
            "on a CPU (docs/video_tower.md)."
        ),
    ),
    PreprocessConfig(
        fps=8,
        clip_frames=16,
        crop_size=32,
        sample_rate=16000,
        n_fft=512,
        hop_length=320,
        spec_frames=100,
        freq_bins=129,
    ),
)
register_model(
    ModelConfig(
        name="avid-lite-energy",
        video_arch="conv2plus1d-4",
        video_energy=True,
        head_norm="batch",
        video_widths=(32, 64, 64, 128),
        audio_widths=(16, 16, 32, 64, 128),
        head_hidden=128,
        description=(
            "avid-lite whose video input also holds each pixel's temporal std (9 channels): "
            "the frames for when, one picture of what changes for what."
        ),
    ),
    model_entry("avid-lite").preprocess,
)
register_model(
    ModelConfig(
        name="avid-summary",
        video_arch="summary2d-4",
        video_summary="change",
        head_norm="batch",
        video_widths=(32, 64, 64, 128),
        audio_widths=(16, 16, 32, 64, 128),
        head_hidden=128,
        description=(
            "CPU-sized: a 4-layer 2-D CNN on one picture of what changes in each clip (each "
            "pixel's std, max and min over time), avid-tiny's audio tower on a 16 kHz "
            "spectrogram; learns AV-Digits' video task from the labels in a few hundred steps "
            "(docs/video_tower.md)."
        ),
    ),
    PreprocessConfig(
        fps=8,
        clip_frames=16,
        crop_size=32,
        sample_rate=16000,
        n_fft=512,
        hop_length=320,
        spec_frames=100,
        freq_bins=129,
    ),
)
register_model(
    ModelConfig(
        name="avid-summary-spectrum",
        video_arch="summary2d-4",
        video_summary="change",
        audio_arch="conv2d-10+spectrum",
        head_norm="batch",
        video_widths=(32, 64, 64, 128),
        audio_widths=(16, 16, 32, 64, 128),
        head_hidden=128,
        description=(
            "avid-summary whose audio tower also reads one spectrum per clip (each frequency's "
            "max, mean and std over time, a 1-D CNN over frequency): both towers start with "
            "what tells the digit apart, so the cross-modal loss has a foothold "
            "(docs/video_tower.md)."
        ),
    ),
    model_entry("avid-summary").preprocess,
)
