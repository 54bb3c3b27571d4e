"""Real speech finds the right digit? Audio->video retrieval with recorded voices (issue 8, item 6).

    .venv/bin/python -m bench.real_speech --data data/avdigits6k
    .venv/bin/python -m bench.real_speech --data data/avdigits6k --model models/avid-lite-avdigits
    .venv/bin/python -m bench.real_speech --data data/avdigits6k --backgrounds silence

The video embeddings of the AV-Digits test split (one centred clip per video, as ``avid eval``
extracts them) are the index. Each source of spoken digits 0-9 is a set of queries: every
recording is resampled to the model's audio rate, put in the model's 2 s window and embedded by
the audio tower, over two backgrounds (a row each): ``silence``, the word centred (its centre
kept when longer) in digital silence and scaled to the middle of AV-Digits' mix levels
(-22 dBFS RMS); ``noise``, the word placed and mixed into the generator's own noise at its
random onset, SNR and level (``training.avdigits_audio.mix_soundtrack``, seeded by ``--seed``
and the recording's place). Every AV-Digits soundtrack is noisy, so silence alone is out of the
training distribution: the two rows tell the voice's effect from the background's. A retrieved
video is a hit when its label is the recording's digit: the table gives class-level P@1, P@5,
mAP and chance, and per digit the recordings whose first video is right (hits / recordings).

Rows: the test soundtracks themselves (the reference: each clip's own video left out, as in
``avid eval``); espeak-ng words in a few voices of the test split's speakers, plain and
band-limited to the telephone (8 kHz, 300-3400 Hz, resampled back); Asterisk's recorded
prompts (Allison, 8 kHz); the ``saytime`` voice (8 kHz mu-law); the ``spokennumbers`` package's
microphone recordings, plain and telephone-band. A source missing on this machine is a
skipped row with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from avid_model.checkpoint import configured_checkpoint, load_checkpoint
from avid_model.features import PreprocessConfig, audio_batch
from avid_model.media import decode_audio
from avid_model.model import AVIDModel
from bench.common import markdown_table, write_json
from training import avdigits_audio
from training.augment import TELEPHONE_BAND, TELEPHONE_RATE
from training.avdigits import DATASET_INFO_NAME
from training.avdigits_splits import NUM_CLASSES
from training.evaluate import SplitFeatures, extract_features
from training.metrics import class_retrieval
from training.sources import load_records

KS = (1, 5)
LEVEL_DBFS = sum(avdigits_audio.LEVEL_DBFS_RANGE) / 2  # -22 dBFS RMS, AV-Digits' middle level
ESPEAK_PITCH, ESPEAK_SPEED = 50, 170  # the middle of the generator's ranges
FALLBACK_VOICES = ("en-us+m3", "en+f3", "en-gb-scotland+m1", "en-029+klatt2")
# The Debian package installs Allison's prompts here; "en" is the name other builds use.
ASTERISK_DIGITS = (
    Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits"),
    Path("/usr/share/asterisk/sounds/en/digits"),
)
SAYTIME_DIR = Path("/usr/share/saytime")  # 0.au .. 9.au: headerless 8 kHz mu-law
BACKGROUNDS = ("silence", "noise")
COLUMNS = [
    "source",
    "background",
    "recordings",
    "P@1",
    "P@5",
    "mAP",
    "chance",
    *(str(d) for d in range(NUM_CLASSES)),
    "note",
]


class SourceMissing(Exception):
    """A source of recordings that this machine does not have (the row is skipped)."""


@dataclass(frozen=True)
class Recording:
    """One spoken digit: a mono float32 waveform at ``rate``."""

    label: int
    waveform: np.ndarray
    rate: int
    name: str


# ----------------------------------------------------------------------------- sources


def espeak_recordings(voices: Sequence[str]) -> list[Recording]:
    """The words "zero".."nine" in each voice, as the generator speaks them (silence trimmed)."""
    try:
        avdigits_audio.require_espeak()
    except avdigits_audio.EspeakNotFoundError as exc:
        raise SourceMissing(str(exc)) from exc
    return [
        Recording(
            label,
            avdigits_audio.synthesize_word(word, voice, ESPEAK_PITCH, ESPEAK_SPEED),
            avdigits_audio.SAMPLE_RATE,
            f"{voice}/{word}",
        )
        for voice in voices
        for label, word in enumerate(avdigits_audio.DIGIT_WORDS)
    ]


def file_recordings(folder: Path, suffix: str, rate: int, why_missing: str) -> list[Recording]:
    """``0<suffix>`` .. ``9<suffix>`` in ``folder``, decoded and resampled to ``rate`` by FFmpeg."""
    paths = [folder / f"{digit}{suffix}" for digit in range(NUM_CLASSES)]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise SourceMissing(f"no {absent[0]} ({why_missing})")
    return [
        Recording(digit, decode_audio(p, sample_rate=rate).numpy(), rate, str(p))
        for digit, p in enumerate(paths)
    ]


def asterisk_recordings(rate: int, folders: Sequence[Path] = ASTERISK_DIGITS) -> list[Recording]:
    folder = next((f for f in folders if (f / "0.wav").is_file()), folders[0])
    return file_recordings(folder, ".wav", rate, "apt-get install asterisk-core-sounds-en-wav")


def decode_mulaw(path: Path, rate: int = TELEPHONE_RATE) -> np.ndarray:
    """A headerless G.711 mu-law file at ``rate`` as mono float32 in [-1, 1] (PyAV's decoder)."""
    with av.open(str(path), format="mulaw", options={"sample_rate": str(rate)}) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    return (
        (np.concatenate(chunks).astype(np.float32) / 32768.0) if chunks else np.zeros(0, np.float32)
    )


def saytime_recordings(folder: Path = SAYTIME_DIR) -> list[Recording]:
    paths = [folder / f"{digit}.au" for digit in range(NUM_CLASSES)]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise SourceMissing(f"no {absent[0]} (apt-get install saytime)")
    return [
        Recording(digit, decode_mulaw(p), TELEPHONE_RATE, str(p)) for digit, p in enumerate(paths)
    ]


def spokennumbers_folder() -> Path:
    """The ``spokennumbers`` package's recordings, found without importing it (pydub warns)."""
    spec = find_spec("spokennumbers")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("the spokennumbers package is not installed (uv sync --dev)")
    return Path(next(iter(spec.submodule_search_locations))) / "default"


def spokennumbers_recordings(rate: int) -> list[Recording]:
    return file_recordings(spokennumbers_folder(), ".wav", rate, "spokennumbers 1.0's voice")


def telephone_band(recording: Recording) -> Recording:
    """Down to 8 kHz, everything outside 300-3400 Hz removed, and back to the recording's rate."""
    narrow = avdigits_audio.resample_fft(recording.waveform, recording.rate, TELEPHONE_RATE)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1.0 / TELEPHONE_RATE)
    low, high = TELEPHONE_BAND
    spectrum[(freqs < low) | (freqs > high)] = 0
    band = np.fft.irfft(spectrum, len(narrow)).astype(np.float32)
    back = avdigits_audio.resample_fft(band, TELEPHONE_RATE, recording.rate)
    return dataclasses.replace(recording, waveform=back)


# Row name -> (source key, telephone band?). Each source is loaded once.
ROWS: tuple[tuple[str, str, bool], ...] = (
    ("espeak-ng words", "espeak", False),
    ("espeak-ng words, telephone band", "espeak", True),
    ("Asterisk prompts (Allison, 8 kHz)", "asterisk", False),
    ("saytime voice (8 kHz mu-law)", "saytime", False),
    ("spokennumbers (microphone)", "spokennumbers", False),
    ("spokennumbers, telephone band", "spokennumbers", True),
)


def source_loaders(voices: Sequence[str], rate: int) -> dict[str, Callable[[], list[Recording]]]:
    return {
        "espeak": lambda: espeak_recordings(voices),
        "asterisk": lambda: asterisk_recordings(rate),
        "saytime": saytime_recordings,
        "spokennumbers": lambda: spokennumbers_recordings(rate),
    }


def held_out_voices(data: Path, count: int) -> list[str]:
    """``count`` espeak-ng voices of the test split (held out from training), else defaults."""
    info = data / DATASET_INFO_NAME
    if info.is_file():
        voices = json.loads(info.read_text()).get("speakers", {}).get("test", [])
        if voices:
            step = max(1, len(voices) // count)
            return list(voices[::step][:count])
    return list(FALLBACK_VOICES[:count])


# ----------------------------------------------------------------------------- model inputs


def model_window(
    recording: Recording, cfg: PreprocessConfig, background: str, rng: np.random.Generator
) -> torch.Tensor:
    """(audio_samples,) float32 at ``cfg.sample_rate``: the recording in the model's window.

    ``"silence"``: centred (its centre kept when longer), silence around it, scaled to
    LEVEL_DBFS RMS (peak at most 0.99). ``"noise"``: placed and mixed as the generator does.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if background == "noise":
        rate = avdigits_audio.SAMPLE_RATE
        word = avdigits_audio.resample_fft(recording.waveform, recording.rate, rate)
        word /= max(float(np.abs(word).max()), 1e-6)
        n = round(cfg.audio_seconds * rate)
        mixed = avdigits_audio.mix_soundtrack(word, n, rng).waveform
        out = avdigits_audio.resample_fft(mixed, rate, cfg.sample_rate)
        return torch.from_numpy(out[: cfg.audio_samples])
    word = avdigits_audio.resample_fft(recording.waveform, recording.rate, cfg.sample_rate)
    n = cfg.audio_samples
    if len(word) > n:
        start = (len(word) - n) // 2
        word = word[start : start + n]
    window = np.zeros(n, dtype=np.float32)
    offset = (n - len(word)) // 2
    window[offset : offset + len(word)] = word
    rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
    if rms > 0:
        window *= 10 ** (LEVEL_DBFS / 20) / rms
        window *= min(1.0, 0.99 / float(np.abs(window).max()))
    return torch.from_numpy(window)


@torch.inference_mode()
def embed_recordings(
    model: AVIDModel,
    recordings: Sequence[Recording],
    background: str = "silence",
    seed: int = 0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(len(recordings), D) unit audio embeddings, each recording in the model's 2 s window."""
    model = model.eval().to(device or torch.device("cpu"))
    cfg = model.preprocess
    windows = [
        model_window(r, cfg, background, np.random.default_rng([seed, i]))
        for i, r in enumerate(recordings)
    ]
    spec = audio_batch(windows, cfg, model.spectrogram_stats)
    return model.encode_audio(spec.to(device or torch.device("cpu"))).float().cpu()


def index_split(
    model: AVIDModel,
    data: Path,
    split: str = "test",
    *,
    workers: int = 2,
    batch_size: int = 32,
    device: torch.device | None = None,
) -> SplitFeatures:
    """Per-video embeddings of a manifest split, as ``avid eval`` extracts them."""
    records = load_records(data, split)
    return extract_features(model, records, batch_size=batch_size, workers=workers, device=device)


# ----------------------------------------------------------------------------- scoring


def score(
    queries: torch.Tensor,
    labels: torch.Tensor,
    index: SplitFeatures,
    *,
    exclude_same_index: bool = False,
) -> dict[str, Any]:
    """Class-level audio->video retrieval of ``queries`` (Q, D) with ``labels`` (Q,) against
    the index's videos: P@k, mAP, chance, and per digit "hits/recordings" at rank 1."""
    retrieval = class_retrieval(
        queries, labels, index.video, index.labels, KS, exclude_same_index=exclude_same_index
    )
    sims = queries @ index.video.T
    if exclude_same_index:
        sims.fill_diagonal_(-torch.inf)
    first = index.labels[sims.argmax(dim=1)]
    row: dict[str, Any] = {
        "recordings": len(labels),
        **{f"P@{k}": retrieval[f"P@{k}"] for k in KS},
        "mAP": retrieval["mAP"],
        "chance": retrieval["chance P@k"],
    }
    for digit in range(NUM_CLASSES):
        mine = labels == digit
        row[str(digit)] = f"{int((first[mine] == digit).sum())}/{int(mine.sum())}"
    row["first"] = first.tolist()
    return row


def reference_name(split: str) -> str:
    return f"AV-Digits {split} soundtracks (reference)"


def run_bench(
    model: AVIDModel,
    index: SplitFeatures,
    voices: Sequence[str],
    *,
    split: str = "test",
    backgrounds: Sequence[str] = BACKGROUNDS,
    seed: int = 0,
    device: torch.device | None = None,
    loaders: dict[str, Callable[[], list[Recording]]] | None = None,
) -> list[dict[str, Any]]:
    """The reference row, then for each of ROWS a row per background (a source this machine
    lacks: one row with the reason)."""
    reference = score(index.audio, index.labels, index, exclude_same_index=True)
    rows = [
        {
            "source": reference_name(split),
            "background": "its own noise",
            **reference,
            "note": "each clip's own video left out",
        }
    ]
    loaders = loaders or source_loaders(voices, model.preprocess.sample_rate)
    loaded: dict[str, list[Recording] | SourceMissing] = {}
    for name, key, telephone in ROWS:
        if key not in loaded:
            try:
                loaded[key] = loaders[key]()
            except SourceMissing as exc:
                loaded[key] = exc
        found = loaded[key]
        if isinstance(found, SourceMissing):
            rows.append({"source": name, "recordings": 0, "note": f"skipped: {found}"})
            continue
        recordings = [telephone_band(r) for r in found] if telephone else found
        labels = torch.tensor([r.label for r in recordings])
        for background in backgrounds:
            queries = embed_recordings(model, recordings, background, seed, device)
            row = {"source": name, "background": background, **score(queries, labels, index)}
            row["names"] = [r.name for r in recordings]
            rows.append(row | {"note": _note(key, voices, telephone)})
    return rows


def _note(key: str, voices: Sequence[str], telephone: bool) -> str:
    notes = {
        "espeak": f"voices {', '.join(voices)}",
        "asterisk": "one real voice",
        "saytime": "one real voice",
        "spokennumbers": "one real voice, 44.1 kHz",
    }
    return notes[key] + (", 300-3400 Hz at 8 kHz" if telephone else "")


# ----------------------------------------------------------------------------- command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/avdigits6k"))
    parser.add_argument(
        "--model", type=Path, default=None, help="checkpoint; default $AVID_CHECKPOINT or models/"
    )
    parser.add_argument("--split", default="test", help="the manifest split to index")
    parser.add_argument("--voices", nargs="*", default=None, help="espeak-ng voices")
    parser.add_argument("--voice-count", type=int, default=4, help="test-split voices to use")
    parser.add_argument("--backgrounds", nargs="+", choices=BACKGROUNDS, default=list(BACKGROUNDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: none)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=Path("bench/results/real_speech.json"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    checkpoint = args.model if args.model is not None else configured_checkpoint()[0]
    device = torch.device(args.device)
    model = load_checkpoint(checkpoint).eval()
    voices = args.voices or held_out_voices(args.data, args.voice_count)
    index = index_split(
        model,
        args.data,
        args.split,
        workers=args.workers,
        batch_size=args.batch_size,
        device=device,
    )
    rows = run_bench(
        model,
        index,
        voices,
        split=args.split,
        backgrounds=args.backgrounds,
        seed=args.seed,
        device=device,
    )
    header = (
        f"model {checkpoint} ({model.model_version}), index: {len(index.labels)} {args.split} "
        f"videos of {args.data}, seed {args.seed}, torch {torch.__version__}"
    )
    print(f"\n{header}\n")
    print(markdown_table(rows, COLUMNS))
    command = " ".join(["python -m bench.real_speech", *(sys.argv[1:] if argv is None else argv)])
    payload = {
        "command": command,
        "header": header,
        "machine": platform.platform(),
        "model": str(checkpoint),
        "model_version": model.model_version,
        "voices": list(voices),
        "backgrounds": list(args.backgrounds),
        "seed": args.seed,
        "rows": rows,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
