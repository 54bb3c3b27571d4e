"""AV-Digits generator: real files, manifest, disjoint splits, determinism, sync, CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from training import avdigits
from training.avdigits import ClipRecord, RenderSettings, load_manifest, synthesize_clip
from training.avdigits_audio import SAMPLE_RATE
from training.avdigits_video import RELEASE_S, handwriting_images, pulse_drive
from training.cli import main as cli_main

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="needs the espeak-ng program (apt-get install espeak-ng)",
)

SEED = 7
CLIPS = 30
SETTINGS = RenderSettings()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ClipRecord]]:
    out = tmp_path_factory.mktemp("avdigits")
    manifest = avdigits.generate(out, clips=CLIPS, seed=SEED, workers=2)
    assert manifest == out / "manifest.jsonl"
    return out, load_manifest(manifest)


def decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)[0]


def decode_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_clips_are_h264_aac_of_the_expected_length(dataset: tuple[Path, list[ClipRecord]]) -> None:
    out, records = dataset
    assert len(records) == CLIPS
    for record in records[:10]:
        with av.open(str(out / record.path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264"
            assert audio.codec_context.name == "aac"
            assert audio.rate == SAMPLE_RATE
            assert (video.width, video.height) == (128, 128)
            assert container.duration is not None
            assert 2.3 <= container.duration / av.time_base <= 2.8
            assert video.average_rate == 16
        assert len(decode_frames(out / record.path)) == SETTINGS.n_frames


def test_manifest_fields_and_dataset_info(dataset: tuple[Path, list[ClipRecord]]) -> None:
    out, records = dataset
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(CLIPS))
    for row in rows:
        assert isinstance(row["path"], str)
        assert (out / row["path"]).is_file()
        assert isinstance(row["label"], int)
        assert 0 <= row["label"] <= 9
        assert row["split"] in ("train", "val", "test")
        assert isinstance(row["speaker"], str)
        assert "+" in row["speaker"]
        assert isinstance(row["handwriting"], int)
        assert isinstance(row["onset"], float)
        assert isinstance(row["offset"], float)
        # The word lies in the clip's centred 2 s (AVID's centred test window).
        margin = (SETTINGS.duration - 2.0) / 2
        assert margin - 1e-4 <= row["onset"] < row["offset"] <= SETTINGS.duration - margin + 1e-4
        assert 0.2 < row["offset"] - row["onset"] < 1.5
    assert {r.label for r in records} == set(range(10))
    assert {r.label for r in records if r.split == "train"} == set(range(10))

    info = json.loads((out / "dataset.json").read_text())
    assert info["seed"] == SEED
    assert info["clips"] == CLIPS
    assert sum(c["total"] for c in info["counts"].values()) == CLIPS
    for split, counts in info["counts"].items():
        assert counts["total"] == sum(r.split == split for r in records)
        assert sum(counts["per_class"]) == counts["total"]
        assert max(counts["per_class"]) - min(counts["per_class"]) <= 1  # balanced labels


def test_handwriting_samples_show_the_right_digits(
    dataset: tuple[Path, list[ClipRecord]],
) -> None:
    _, labels = handwriting_images()
    for record in dataset[1]:
        assert labels[record.handwriting] == record.label
        assert record.distractor_label != record.label
        assert labels[record.distractor_handwriting] == record.distractor_label


def test_splits_share_no_speaker_and_no_handwriting(
    dataset: tuple[Path, list[ClipRecord]],
) -> None:
    pools = avdigits.split_pools(SEED)
    speakers = [set(pools.speakers[s]) for s in avdigits.SPLITS]
    writing = [{i for c in pools.handwriting[s] for i in c} for s in avdigits.SPLITS]
    for pool in (speakers, writing):
        assert all(pool)
        assert not (pool[0] & pool[1])
        assert not (pool[0] & pool[2])
        assert not (pool[1] & pool[2])
    assert sum(map(len, writing)) == len(handwriting_images()[1])  # every sample used once
    for record in dataset[1]:
        k = avdigits.SPLITS.index(record.split)
        assert record.speaker in speakers[k]
        assert {record.handwriting, record.distractor_handwriting} <= writing[k]


def test_same_seed_same_data_whatever_the_workers(
    dataset: tuple[Path, list[ClipRecord]], tmp_path: Path
) -> None:
    out, records = dataset
    # Three workers instead of two: clips land on other processes, in another order.
    again = avdigits.generate(tmp_path / "again", clips=CLIPS, seed=SEED, workers=3)
    assert again.read_bytes() == (out / "manifest.jsonl").read_bytes()
    clip = records[3].path
    np.testing.assert_array_equal(
        decode_frames(out / clip), decode_frames(tmp_path / "again" / clip)
    )
    np.testing.assert_array_equal(decode_audio(out / clip), decode_audio(tmp_path / "again" / clip))

    first = records[0]
    other = synthesize_clip(first.index, first.split, first.label, SEED + 1, SETTINGS)
    assert other.record != first
    assert avdigits.plan_clips(CLIPS, SEED) != avdigits.plan_clips(CLIPS, SEED + 1)
    assert avdigits.split_pools(SEED) != avdigits.split_pools(SEED + 1)


def test_speech_is_loud_between_onset_and_offset(dataset: tuple[Path, list[ClipRecord]]) -> None:
    out, records = dataset
    for record in records:
        waveform = decode_audio(out / record.path)
        t = np.arange(len(waveform)) / SAMPLE_RATE
        inside = (t > record.onset + 0.02) & (t < record.offset - 0.02)
        outside = (t < record.onset - 0.05) | ((t > record.offset + 0.05) & (t < 2.45))
        rms_in = np.sqrt(np.mean(waveform[inside] ** 2))
        rms_out = np.sqrt(np.mean(waveform[outside] ** 2))
        assert rms_in > 1.4 * rms_out, record


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def test_target_digit_follows_the_speech_and_the_distractor_does_not(
    dataset: tuple[Path, list[ClipRecord]],
) -> None:
    out, records = dataset
    hop = SAMPLE_RATE // 16
    target_corr = []
    for record in records:
        clip = synthesize_clip(record.index, record.split, record.label, SEED, SETTINGS)
        assert clip.record == record
        # The file shows what the parameters say (lossy h264, so approximately).
        decoded = decode_frames(out / record.path).astype(np.float32)
        assert np.abs(decoded - clip.frames).mean() < 8.0
        # Loudness of the decoded soundtrack (speech + noise) per video frame.
        waveform = decode_audio(out / record.path)[: SETTINGS.n_frames * hop]
        loudness = np.sqrt(np.mean(waveform.reshape(SETTINGS.n_frames, hop) ** 2, axis=1))
        target_corr.append(_correlation(clip.target.opacity, loudness))
        assert _correlation(clip.target.height, clip.target.opacity) > 0.99  # size pulses too
        assert clip.target.opacity.max() > 0.95 > 0.5 > clip.target.opacity.min()
        # The distractor never pulses: same opacity and size in every frame, as dim as the
        # target at rest can be.
        assert np.ptp(clip.distractor.opacity) == 0.0
        assert np.ptp(clip.distractor.height) == 0.0
        assert clip.distractor.opacity[0] < 0.5
    target = np.array(target_corr)
    assert target.min() > 0.6
    assert target.mean() > 0.8  # below 1: the pulse fades out over RELEASE_S after the word


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli_main(["data", "avdigits", "--out", str(out), "--clips", "0"]) == 2
    assert "--clips must be at least 1" in capsys.readouterr().err

    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert cli_main(["data", "avdigits", "--out", str(a_file), "--clips", "2"]) == 2
    assert "is not a directory" in capsys.readouterr().err

    assert cli_main(["data", "avdigits", "--out", str(out), "--clips", "2", "--size", "7"]) == 2
    assert "size must be" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["data", "avdigits", "--out", str(out), "--clips", "2", "--workers", "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert not out.exists()


def test_cli_generates_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["data", "avdigits", "--out", str(out), "--clips", "2", "--workers", "1", "--quiet"]
    assert cli_main(args) == 0
    assert len(load_manifest(out)) == 2
    assert cli_main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite"]) == 0


def test_load_manifest_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"index": 0}\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:1: .*missing fields"):
        load_manifest(path)


@pytest.mark.slow
def test_handwriting_images_match_sklearn_load_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = handwriting_images()
    np.testing.assert_array_equal(images[:, 1:-1, 1:-1], digits.images.astype(np.float32) / 16)
    np.testing.assert_array_equal(images[:, 0], 0.0)  # the zero border
    np.testing.assert_array_equal(labels, digits.target)


def test_pulse_rises_with_the_sound_and_fades_after_it() -> None:
    envelope = np.zeros(32, dtype=np.float32)
    envelope[10:13] = [0.5, 1.0, 0.5]  # 0.5 < the decayed 1.0 (0.78 at 16 fps)
    drive = pulse_drive(envelope, fps=16.0)
    np.testing.assert_array_equal(drive[:10], 0.0)
    np.testing.assert_allclose(drive[10:12], [0.5, 1.0])
    decay = np.exp(-1.0 / (RELEASE_S * 16.0))
    np.testing.assert_allclose(drive[12:16], decay ** np.arange(1, 5), rtol=1e-6)
    assert (drive >= envelope).all()
    assert drive[-1] < 0.01
