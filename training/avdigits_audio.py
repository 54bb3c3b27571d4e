"""AV-Digits sound: spoken digit words from espeak-ng, placed in a noisy 24 kHz soundtrack.

A clip's soundtrack is one word ("zero".."nine") spoken by an espeak-ng voice (a base voice
plus a variant, e.g. ``en-us+f3``) at a random pitch and speed, trimmed of silence, resampled to
24 kHz, placed at a random onset inside the clip's centred 2 s and mixed into background noise
(white, pink, brown or mains hum) at a random signal-to-noise ratio and overall level. Nothing
here depends on the label except the word itself.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 24_000
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NOISE_KINDS = ("white", "pink", "brown", "hum")

# English accents first, then a few other languages' voices reading the English words.
BASE_VOICES = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
    "de",
    "nl",
    "af",
)
VOICE_VARIANTS = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    *("klatt", "klatt2", "klatt3", "klatt4", "klatt6"),
    *("Alex", "Alicia", "Andrea", "Andy", "Annie", "Gene", "Lee", "Michael", "Mike"),
    *("antonio", "aunty", "belinda", "boris", "croak", "grandma", "grandpa", "john"),
    *("linda", "max", "michel", "norbert", "quincy", "rob", "steph", "travis"),
    *("whisper", "whisperf", "zac"),
)
PITCH_RANGE = (25, 80)  # espeak-ng -p, 0..99
SPEED_RANGE = (130, 210)  # espeak-ng -s, words per minute
SNR_DB_RANGE = (3.0, 20.0)  # speech RMS over its active span vs noise RMS
LEVEL_DBFS_RANGE = (-30.0, -14.0)  # RMS of the final mix
# The word lies inside the centred window of this many seconds (the whole clip, less 0.1 s
# margins, when that is shorter): the window a model's centred 2 s test clip sees.
WORD_WINDOW_S = 2.0


def speaker_ids() -> tuple[str, ...]:
    """Every voice the generator may use, as espeak-ng ``-v`` names (``base+variant``)."""
    return tuple(f"{base}+{variant}" for base in BASE_VOICES for variant in VOICE_VARIANTS)


class EspeakNotFoundError(RuntimeError):
    """The espeak-ng program is not installed."""


def require_espeak() -> str:
    """Path of the espeak-ng binary; raises EspeakNotFoundError with an install hint."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFoundError(
            "espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng)"
        )
    return path


def parse_wav_pcm16(data: bytes) -> tuple[np.ndarray, int]:
    """(float32 mono waveform in [-1, 1], sample rate) from a 16-bit PCM RIFF/WAV byte string.

    espeak-ng writes to a pipe without knowing the length, so the header sizes are bogus: the
    samples are everything after the ``data`` chunk header.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a WAV stream")
    channels = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    if channels != 1 or bits != 16:
        raise ValueError(f"expected 16-bit mono WAV, got {channels} channels of {bits} bits")
    start = data.find(b"data", 36)
    if start < 0:
        raise ValueError("WAV stream without a data chunk")
    payload = data[start + 8 :]
    payload = payload[: len(payload) // 2 * 2]
    samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    return samples, rate


def synthesize_word(word: str, speaker: str, pitch: int, speed: int) -> np.ndarray:
    """One word spoken by espeak-ng, silence trimmed, peak 1, as float32 at SAMPLE_RATE."""
    cmd = [require_espeak(), "--stdout", "-v", speaker, "-p", str(pitch), "-s", str(speed)]
    result = subprocess.run([*cmd, word], capture_output=True, check=True)
    samples, rate = parse_wav_pcm16(result.stdout)
    speech = resample_fft(trim_silence(samples, rate), rate, SAMPLE_RATE)
    speech /= max(float(np.abs(speech).max()), 1e-6)
    return speech


def trim_silence(samples: np.ndarray, rate: int, threshold: float = 0.02) -> np.ndarray:
    """Drop leading/trailing 5 ms frames whose peak is below `threshold` x the overall peak."""
    hop = max(1, rate // 200)
    n_frames = len(samples) // hop
    if n_frames == 0:
        raise ValueError("espeak-ng produced no audio")
    peaks = np.abs(samples[: n_frames * hop]).reshape(n_frames, hop).max(axis=1)
    loud = np.flatnonzero(peaks >= threshold * peaks.max())
    return samples[loud[0] * hop : (loud[-1] + 1) * hop]


def resample_fft(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by zero-padding/truncating the spectrum (float32 out)."""
    if rate_in == rate_out:
        return samples.astype(np.float32)
    n_in = len(samples)
    n_out = round(n_in * rate_out / rate_in)
    spectrum = np.fft.rfft(samples)
    resampled = np.fft.irfft(spectrum, n_out) * (n_out / n_in)
    return resampled.astype(np.float32)


def make_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background noise of the given kind (float32, length n_samples)."""
    if kind == "hum":
        t = np.arange(n_samples) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        harmonics = np.arange(1, 6)
        gains = rng.uniform(0.1, 1.0, size=5) / harmonics
        phases = rng.uniform(0, 2 * np.pi, size=5)
        noise = (
            gains[:, None] * np.sin(2 * np.pi * base * harmonics[:, None] * t + phases[:, None])
        ).sum(0)
        noise += 0.05 * rng.standard_normal(n_samples)
    else:
        white = rng.standard_normal(n_samples)
        if kind == "white":
            noise = white
        else:
            exponent = {"pink": 0.5, "brown": 1.0}[kind]
            spectrum = np.fft.rfft(white)
            freqs = np.fft.rfftfreq(n_samples, 1.0 / SAMPLE_RATE)
            shaping = np.zeros_like(freqs)
            shaping[1:] = (freqs[1] / freqs[1:]) ** exponent
            shaping[freqs < 20.0] = 0.0  # no DC or sub-audio rumble
            noise = np.fft.irfft(spectrum * shaping, n_samples)
    noise = noise - noise.mean()
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)).astype(np.float32)


@dataclass(frozen=True)
class Soundtrack:
    """The mixed waveform plus what the video and the manifest need to know about it."""

    waveform: np.ndarray  # (N,) float32 in [-1, 1] at SAMPLE_RATE
    speech: np.ndarray  # (N,) float32, the placed word alone (before noise and level)
    onset: float  # seconds
    offset: float  # seconds
    noise: str
    snr_db: float


def place_word(
    speech: np.ndarray, n_samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """(n_samples with the word at a random onset, first sample, end sample).

    The word lies inside the centred WORD_WINDOW_S seconds, at least 0.1 s from either end.
    """
    margin = max(SAMPLE_RATE // 10, (n_samples - round(WORD_WINDOW_S * SAMPLE_RATE)) // 2)
    speech = speech[: n_samples - 2 * margin]  # only a clip shorter than the word truncates
    start = int(rng.integers(margin, n_samples - margin - len(speech) + 1))
    placed = np.zeros(n_samples, dtype=np.float32)
    placed[start : start + len(speech)] = speech
    return placed, start, start + len(speech)


def mix_soundtrack(speech: np.ndarray, n_samples: int, rng: np.random.Generator) -> Soundtrack:
    """Place a word in n_samples of noise at a random SNR and overall level."""
    placed, start, stop = place_word(speech, n_samples, rng)
    noise_kind = str(rng.choice(NOISE_KINDS))
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    noise = make_noise(noise_kind, n_samples, rng)
    speech_rms = float(np.sqrt(np.mean(placed[start:stop] ** 2)))
    mix = placed + noise * (speech_rms / 10 ** (snr_db / 20))
    level = 10 ** (rng.uniform(*LEVEL_DBFS_RANGE) / 20)
    mix *= level / float(np.sqrt(np.mean(mix**2)))
    peak = float(np.abs(mix).max())
    if peak > 0.99:
        mix *= 0.99 / peak
    return Soundtrack(
        waveform=mix.astype(np.float32),
        speech=placed,
        onset=round(start / SAMPLE_RATE, 4),
        offset=round(stop / SAMPLE_RATE, 4),
        noise=noise_kind,
        snr_db=round(snr_db, 2),
    )


def frame_envelope(speech: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Loudness of `speech` per video frame in [0, 1]: sqrt(RMS / max RMS), shape (n_frames,)."""
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(np.int64)
    edges = np.minimum(edges, len(speech))
    cumulative = np.concatenate([[0.0], np.cumsum(speech.astype(np.float64) ** 2)])
    energy = cumulative[edges[1:]] - cumulative[edges[:-1]]
    rms = np.sqrt(np.maximum(energy, 0.0) / np.maximum(np.diff(edges), 1))
    peak = float(rms.max()) if n_frames else 0.0
    if peak <= 0.0:
        return np.zeros(n_frames, dtype=np.float32)
    return np.sqrt(rms / peak).astype(np.float32)
