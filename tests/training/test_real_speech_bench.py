"""``bench/real_speech.py`` run for real: a tiny AV-Digits set, a fresh small checkpoint, and
recordings written here (espeak-ng words as WAV files and as headerless mu-law) standing in
for the packages' voices, so the file paths are exercised whether or not they are installed."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from avid_model import create_model
from avid_model.checkpoint import save_checkpoint
from bench import real_speech
from bench.real_speech import (
    BACKGROUNDS,
    COLUMNS,
    ROWS,
    Recording,
    SourceMissing,
    reference_name,
)
from training.avdigits_audio import DIGIT_WORDS, SAMPLE_RATE, require_espeak, synthesize_word
from training.evaluate import SplitFeatures

VOICE = "en-us+m3"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "summary-spectrum"
    save_checkpoint(create_model("avid-summary-spectrum").eval(), path)
    return path


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _write_mulaw(path: Path, samples: np.ndarray, rate: int) -> None:
    """Headerless G.711 mu-law, as the saytime package ships its voice."""
    with av.open(str(path), "w", format="mulaw") as container:
        stream = container.add_stream("pcm_mulaw", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def voice_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """0.wav..9.wav at 8 kHz (Asterisk's layout) and 0.au..9.au mu-law (saytime's)."""
    require_espeak()
    wavs, mulaw = tmp_path_factory.mktemp("wav"), tmp_path_factory.mktemp("mulaw")
    for digit, word in enumerate(DIGIT_WORDS):
        speech = synthesize_word(word, "en+f3", 50, 170)
        narrow = real_speech.avdigits_audio.resample_fft(speech, SAMPLE_RATE, 8000) * 0.5
        _write_wav(wavs / f"{digit}.wav", narrow, 8000)
        _write_mulaw(mulaw / f"{digit}.au", narrow, 8000)
    return wavs, mulaw


def test_mulaw_decodes_back_to_the_waveform(tmp_path: Path) -> None:
    t = np.arange(4000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    _write_mulaw(tmp_path / "tone.au", tone, 8000)
    decoded = real_speech.decode_mulaw(tmp_path / "tone.au")
    assert decoded.shape == tone.shape
    assert np.abs(decoded - tone).max() < 0.02  # mu-law's quantisation step near 0.5


def test_telephone_band_removes_what_a_phone_cannot_carry() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    freqs = np.array([100.0, 1000.0, 6000.0])[:, None]
    tones = np.sin(2 * np.pi * freqs * t).sum(axis=0).astype(np.float32)
    band = real_speech.telephone_band(Recording(0, tones, rate, "tones")).waveform
    spectrum = np.abs(np.fft.rfft(band)) / (rate / 2)  # amplitude per 1 Hz bin
    assert band.shape == tones.shape
    assert spectrum[1000] == pytest.approx(1.0, abs=0.01)
    assert spectrum[100] < 0.01
    assert spectrum[6000] < 0.01


def test_model_window_centres_and_levels_the_word() -> None:
    cfg = create_model("avid-summary-spectrum").preprocess
    word = np.ones(8000, dtype=np.float32)  # 1 s at 8 kHz
    window = real_speech.model_window(
        Recording(3, word, 8000, "w"), cfg, "silence", np.random.default_rng(0)
    ).numpy()
    assert window.shape == (cfg.audio_samples,)
    loud = np.flatnonzero(np.abs(window) > 0.01)
    assert abs((loud[0] + loud[-1]) / 2 - cfg.audio_samples / 2) < cfg.sample_rate * 0.01
    assert len(loud) == pytest.approx(cfg.sample_rate, rel=0.02)
    rms_db = 20 * np.log10(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(real_speech.LEVEL_DBFS, abs=0.1)


def test_bench_writes_the_table_and_scores_the_reference_row(
    avdigits_small: Path,
    checkpoint: Path,
    voice_folders: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wavs, mulaw = voice_folders
    monkeypatch.setattr(real_speech, "ASTERISK_DIGITS", (tmp_path / "absent", wavs))
    monkeypatch.setattr(real_speech, "SAYTIME_DIR", mulaw)

    def no_package() -> Path:
        raise SourceMissing("not installed here")

    monkeypatch.setattr(real_speech, "spokennumbers_folder", no_package)
    built: list[SplitFeatures] = []

    def index_split(*args: Any, **kwargs: Any) -> SplitFeatures:
        built.append(real_speech_index_split(*args, **kwargs))
        return built[-1]

    real_speech_index_split = real_speech.index_split
    monkeypatch.setattr(real_speech, "index_split", index_split)
    out = tmp_path / "real_speech.json"
    # The train split: 16 clips, six digits twice, so a clip's soundtrack can find another
    # clip of its digit once its own video is left out.
    args = ["--data", str(avdigits_small.parent), "--model", str(checkpoint), "--split", "train"]
    payload = real_speech.main([*args, "--voices", VOICE, "--workers", "0", "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    rows = {(row["source"], row.get("background")): row for row in payload["rows"]}
    present = ("espeak", "asterisk", "saytime")
    assert list(rows) == [
        (reference_name("train"), "its own noise"),
        *(
            (name, background)
            for name, key, _ in ROWS
            for background in (BACKGROUNDS if key in present else (None,))
        ),
    ]
    printed = capsys.readouterr().out
    assert "| " + " | ".join(COLUMNS) + " |" in printed
    assert len([line for line in printed.splitlines() if line.startswith("| ")]) == 1 + len(rows)

    # The reference row: every clip's soundtrack against the other clips' videos.
    labels = [
        json.loads(line)["label"]
        for line in avdigits_small.read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    reference = rows[reference_name("train"), "its own noise"]
    assert reference["recordings"] == len(labels)
    assert 0.0 <= reference["P@1"] <= 1.0
    hits = [reference[str(d)].split("/") for d in range(10)]
    assert [int(n) for _, n in hits] == [labels.count(d) for d in range(10)]
    assert sum(int(h) for h, _ in hits) / len(labels) == pytest.approx(reference["P@1"])
    # ... and the same P@1 computed here from the index's embeddings.
    (index,) = built
    assert index.labels.tolist() == labels
    sims = index.audio @ index.video.T
    sims.fill_diagonal_(-torch.inf)
    first = index.labels[sims.argmax(dim=1)]
    assert reference["first"] == first.tolist()
    assert reference["P@1"] == pytest.approx(float((first == index.labels).float().mean()))
    assert reference["chance"] == pytest.approx(
        sum(labels.count(d) - 1 for d in labels) / (len(labels) * (len(labels) - 1))
    )

    for background in BACKGROUNDS:
        for name in ("espeak-ng words", "espeak-ng words, telephone band"):
            row = rows[name, background]
            assert row["recordings"] == 10
            assert all(row[str(d)].endswith("/1") for d in range(10))
            assert 0.0 <= row["P@1"] <= 1.0
        for name in ("Asterisk prompts (Allison, 8 kHz)", "saytime voice (8 kHz mu-law)"):
            row = rows[name, background]
            assert row["recordings"] == 10
            assert row["names"][0].endswith(("0.wav", "0.au"))
            assert 0.0 <= row["P@5"] <= 1.0
    for name in ("spokennumbers (microphone)", "spokennumbers, telephone band"):
        assert rows[name, None] == {
            "source": name,
            "recordings": 0,
            "note": "skipped: not installed here",
        }
    assert "| spokennumbers (microphone) |  | 0 |" in printed


def test_noise_mixes_each_recording_as_the_generator_does(checkpoint: Path) -> None:
    model = real_speech.load_checkpoint(checkpoint)
    (one,) = real_speech.espeak_recordings([VOICE])[:1]
    clean = real_speech.embed_recordings(model, [one], "silence")
    noisy = real_speech.embed_recordings(model, [one], "noise", seed=0)
    again = real_speech.embed_recordings(model, [one], "noise", seed=0)
    other = real_speech.embed_recordings(model, [one], "noise", seed=1)
    assert clean.shape == (1, model.config.embed_dim)
    assert torch.allclose(noisy, again)
    assert not torch.allclose(noisy, clean, atol=1e-3)
    assert not torch.allclose(noisy, other, atol=1e-3)


def test_noise_window_is_noisy_throughout_at_an_avdigits_level() -> None:
    cfg = create_model("avid-summary-spectrum").preprocess
    word = np.sin(np.linspace(0, 800 * np.pi, 4000)).astype(np.float32)  # 0.5 s at 8 kHz
    recording = Recording(1, word, 8000, "w")
    window = real_speech.model_window(recording, cfg, "noise", np.random.default_rng(0)).numpy()
    assert window.shape == (cfg.audio_samples,)
    quarter = cfg.audio_samples // 4
    assert all(np.abs(part).max() > 0 for part in window.reshape(4, quarter))
    rms_db = 20 * np.log10(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
    low, high = real_speech.avdigits_audio.LEVEL_DBFS_RANGE
    assert low - 1 <= rms_db <= high + 1
    with pytest.raises(ValueError, match="background"):
        real_speech.model_window(recording, cfg, "pink", np.random.default_rng(0))
