"""Architecture facts of AVID_SPEC.md §1: parameter counts and every stage's shape."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from avid_model import create_model
from avid_model.audio_encoder import Conv2D10, Conv2D10Spectrum, SpectrumSummary
from avid_model.features import audio_batch
from avid_model.model import AVIDModel, ProjectionHead
from avid_model.video_encoder import (
    ClipSummary,
    ClipSummary2D4,
    Conv2Plus1D4,
    FrameDifference,
    R2Plus1D18,
    R2Plus1DBlock,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_video_encoder_parameter_counts_per_stage() -> None:
    video = R2Plus1D18()
    assert n_params(video) == 15_379_136
    assert n_params(video.conv1) == 28_352
    assert n_params(video.conv2x) == 197_632
    assert n_params(video.conv3x) == 722_944
    assert n_params(video.conv4x) == 2_887_680
    assert n_params(video.conv5x) == 11_542_528


def test_audio_head_and_whole_model_parameter_counts() -> None:
    assert n_params(Conv2D10()) == 4_725_696
    assert n_params(ProjectionHead()) == 590_976
    model = create_model("avid-r2p1d18")
    assert n_params(model.video_head) == 590_976
    assert n_params(model.audio_head) == 590_976
    assert n_params(model) == 21_286_784


def test_no_convolution_has_a_bias() -> None:
    model = create_model("avid-r2p1d18")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d)]
    assert len(convs) == 1 + 32 + 3 + 1 + 8  # video: stem, 8 blocks x 4, 3 shortcuts; audio
    assert all(m.bias is None for m in convs)


@torch.inference_mode()
def test_video_stage_shapes_112() -> None:
    video = R2Plus1D18().eval()
    feats = video.forward_features(torch.randn(1, 3, 8, 112, 112))
    assert feats["stem"].shape == (1, 64, 8, 28, 28)
    assert feats["conv2x"].shape == (1, 64, 8, 28, 28)
    assert feats["conv3x"].shape == (1, 128, 4, 14, 14)
    assert feats["conv4x"].shape == (1, 256, 2, 7, 7)
    assert feats["conv5x"].shape == (1, 512, 1, 4, 4)


@torch.inference_mode()
def test_video_conv5x_shape_224() -> None:
    # The stem and first stages at 224 px cost ~4x the 112 px run; narrow widths keep the
    # test fast while exercising the same strides and paddings.
    video = R2Plus1D18((8, 8, 8, 8, 16)).eval()
    feats = video.forward_features(torch.randn(1, 3, 8, 224, 224))
    assert feats["conv5x"].shape == (1, 16, 1, 7, 7)


@torch.inference_mode()
def test_audio_stage_shapes() -> None:
    audio = Conv2D10().eval()
    feats = audio.forward_features(torch.randn(2, 1, 200, 257))
    assert feats["stem"].shape == (2, 64, 100, 129)
    assert feats["block1"].shape == (2, 64, 50, 65)
    assert feats["block2"].shape == (2, 128, 25, 33)
    assert feats["block3"].shape == (2, 256, 13, 17)
    assert feats["block4"].shape == (2, 512, 13, 17)


@torch.inference_mode()
def test_pooling_is_global_max() -> None:
    video = R2Plus1D18((8, 8, 8, 8, 16)).eval()
    x = torch.randn(2, 3, 8, 64, 64)
    expected = video.forward_features(x)["conv5x"].amax(dim=(2, 3, 4))
    torch.testing.assert_close(video(x), expected)


@pytest.mark.parametrize("name", ["avid-tiny", "avid-r2p1d18"])
@torch.inference_mode()
def test_embeddings_are_unit_128d(name: str) -> None:
    model = create_model(name).eval()
    v = model.encode_video(torch.randn(2, 3, 8, 112, 112))
    a = model.encode_audio(torch.randn(2, 1, 200, 257))
    assert v.shape == a.shape == (2, 128)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))


def test_tiny_model_is_much_narrower_with_same_structure() -> None:
    tiny = create_model("avid-tiny")
    full = create_model("avid-r2p1d18")
    assert n_params(tiny) < n_params(full) / 10
    tiny_names = [n for n, _ in tiny.named_modules()]
    full_names = [n for n, _ in full.named_modules()]
    assert tiny_names == full_names


def test_forward_returns_both_embeddings_and_backpropagates() -> None:
    model = create_model("avid-tiny")
    v, a = model(torch.randn(2, 3, 8, 64, 64), torch.randn(2, 1, 200, 257))
    (v * a).sum().backward()
    assert isinstance(model.video_encoder, R2Plus1D18)
    assert isinstance(model.audio_encoder, Conv2D10)
    assert model.video_encoder.conv1[0].weight.grad is not None
    assert model.audio_encoder.conv1[0].weight.grad is not None


@pytest.mark.slow  # torch.compile takes ~45 s on 2 cores
def test_compiled_embedder_pads_to_buckets_and_matches_eager() -> None:
    from avid_model.inference import Embedder, InferenceSettings

    model = create_model("avid-tiny").eval()
    settings = InferenceSettings(device="cpu", precision="fp32", compile=True, batch_size=4)
    embedder = Embedder(model, settings)
    x = torch.randn(3, 1, 200, 257)  # 3 clips run as a padded batch of 4
    with torch.no_grad():
        expected = model.encode_audio(x)
    torch.testing.assert_close(embedder.embed_audio(x), expected, atol=1e-4, rtol=1e-4)


def test_depthwise_temporal_is_opt_in_and_keeps_shapes() -> None:
    full = R2Plus1D18((16, 16, 32, 64, 128))
    depthwise = R2Plus1D18((16, 16, 32, 64, 128), temporal="depthwise")
    full_block, depthwise_block = full.conv3x[0], depthwise.conv3x[0]
    assert isinstance(full_block, R2Plus1DBlock)
    assert isinstance(depthwise_block, R2Plus1DBlock)
    for block in (full_block, depthwise_block):
        assert block.tmp_conv1.stride == (2, 1, 1)
    assert full_block.tmp_conv1.groups == 1
    assert depthwise_block.tmp_conv1.groups == 32
    assert depthwise_block.tmp_conv2.weight.shape == (32, 1, 3, 1, 1)
    assert n_params(depthwise) < n_params(full)
    x = torch.randn(2, 3, 8, 32, 32)
    assert depthwise(x).shape == full(x).shape == (2, 128)
    # The paper's configuration is untouched: full temporal mixing.
    assert create_model("avid-r2p1d18").config.video_temporal == "full"
    with pytest.raises(ValueError, match="temporal"):
        R2Plus1D18((16, 16, 32, 64, 128), temporal="causal")  # type: ignore[arg-type]


def test_batch_norm_head_centres_every_dimension_and_the_paper_head_has_none() -> None:
    head = ProjectionHead(64, 32, 16, norm="batch").train()
    # A large input-independent offset: the paper's head passes it through to every embedding.
    x = torch.randn(32, 64) + 10.0
    out = head(x)
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in ProjectionHead().modules())
    with pytest.raises(ValueError, match="head norm"):
        ProjectionHead(norm="layer")  # type: ignore[arg-type]


def test_avid_lite_keeps_different_clips_apart_at_initialisation() -> None:
    """Mean cosine between different clips' embeddings: the collapse that kept avid-tiny at
    chance (0.99 at step 87) must not be there from the start."""
    torch.manual_seed(0)
    model = create_model("avid-lite").train()
    side = model.preprocess.crop_size
    v, a = model(torch.rand(16, 3, 16, side, side), torch.randn(16, 1, 100, 129))
    for emb in (v, a):
        cos = emb @ emb.T
        off_diagonal = cos[~torch.eye(16, dtype=torch.bool)]
        assert float(off_diagonal.mean()) < 0.5


def test_frame_difference_energy_marks_what_changes_in_every_frame() -> None:
    """energy=True adds each pixel's temporal std: 0 where nothing changes, the pulse's size
    where one pixel pulses in 3 of 16 frames, the same in every frame."""
    clip = torch.full((1, 3, 16, 8, 8), 0.3)
    clip[:, :, 5:8, 2, 4] = 1.0
    out = FrameDifference(energy=True)(clip)
    assert out.shape == (1, 9, 16, 8, 8)
    assert torch.equal(out[:, :6], FrameDifference()(clip))
    energy = out[:, 6:]
    expected = 0.7 * (3 / 16 * 13 / 16) ** 0.5  # std of a 0.7 step present in 3 of 16 frames
    assert energy[0, :, :, 2, 4] == pytest.approx(torch.full((3, 16), expected), abs=1e-4)
    still = energy.clone()
    still[:, :, :, 2, 4] = 0
    assert float(still.max()) < 2e-3
    assert Conv2Plus1D4(energy=True)(torch.rand(2, 3, 16, 32, 32)).shape == (2, 128)


def test_clip_summary_is_the_mean_frame_and_each_pixels_change_over_time() -> None:
    """One pixel brightened by 0.7 in 3 of 16 frames: mean 0.3 + 0.7 * 3/16 there, std of the
    step, max 0.7 * 13/16 above the mean, min 0.7 * 3/16 below it; zero change elsewhere."""
    clip = torch.full((1, 3, 16, 8, 8), 0.3)
    clip[:, :, 5:8, 2, 4] = 1.0
    out = ClipSummary()(clip)
    assert out.shape == (1, 12, 8, 8)
    mean, std, high, low = out[0, 0:3], out[0, 3:6], out[0, 6:9], out[0, 9:12]
    at = (slice(None), 2, 4)
    assert mean[at] == pytest.approx(torch.full((3,), 0.3 + 0.7 * 3 / 16), abs=1e-5)
    assert std[at] == pytest.approx(torch.full((3,), 0.7 * (3 / 16 * 13 / 16) ** 0.5), abs=1e-4)
    assert high[at] == pytest.approx(torch.full((3,), 0.7 * 13 / 16), abs=1e-5)
    assert low[at] == pytest.approx(torch.full((3,), -0.7 * 3 / 16), abs=1e-5)
    elsewhere = torch.ones(8, 8, dtype=torch.bool)
    elsewhere[2, 4] = False
    assert torch.allclose(mean[:, elsewhere], torch.tensor(0.3))
    assert float(std[:, elsewhere].max()) < 2e-3
    assert float(high[:, elsewhere].abs().max()) < 1e-6
    # change_only is the same picture without the mean frame (what avid-summary sees).
    assert torch.equal(ClipSummary(change_only=True)(clip), out[:, 3:])
    assert create_model("avid-summary").video_encoder.conv1.out_channels == 9
    # The order of frames does not matter: a summary sees what changes, not when.
    shuffled = clip[:, :, torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    assert torch.allclose(ClipSummary()(shuffled), out, atol=1e-6)


def test_summary2d_tower_shapes_match_the_probe_keys() -> None:
    tower = ClipSummary2D4((32, 64, 64, 128))
    features = tower.forward_features(torch.rand(2, 3, 16, 32, 32))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "stem": (2, 12, 1, 32, 32),
        "conv2x": (2, 32, 1, 16, 16),
        "conv3x": (2, 64, 1, 8, 8),
        "conv4x": (2, 64, 1, 4, 4),
        "conv5x": (2, 128, 1, 2, 2),
    }
    assert tower(torch.rand(2, 3, 16, 32, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match="4 entries"):
        ClipSummary2D4((32, 64))


def test_spectrum_summary_is_each_frequencys_max_mean_and_std_over_time() -> None:
    """A tone in bin 7 for 4 of 10 frames: max 1, mean 0.4, std of the step there; zero
    elsewhere. Order-free over time, but where in frequency the energy lies is kept."""
    spec = torch.zeros(1, 1, 10, 16)
    spec[0, 0, 3:7, 7] = 1.0
    summary = SpectrumSummary.summary(spec)
    assert summary.shape == (1, 3, 16)
    assert summary[0, :, 7].tolist() == pytest.approx([1.0, 0.4, (0.4 * 0.6 * 10 / 9) ** 0.5])
    assert float(summary[0, :, :7].abs().max()) == 0.0
    shuffled = spec[:, :, torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    assert torch.allclose(SpectrumSummary.summary(shuffled), summary)
    tower = SpectrumSummary(16).eval()
    moved = torch.roll(spec, 4, dims=3)  # the same tone 4 bins higher
    assert not torch.allclose(tower(spec), tower(moved))
    assert tower(torch.rand(2, 1, 10, 16)).shape == (2, 128)


def test_avid_summary_spectrum_concatenates_both_audio_paths() -> None:
    model = create_model("avid-summary-spectrum")
    audio = model.audio_encoder
    assert isinstance(audio, Conv2D10Spectrum)
    assert audio.out_dim == 128 + 128
    x = torch.rand(2, 1, 100, 129)
    assert set(audio.forward_features(x)) == {"stem", "block1", "block2", "block3", "block4"}
    model.eval()
    assert model.encode_audio(x).shape == (2, 128)
    bogus = replace(model.config, audio_arch="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audio_arch"):
        AVIDModel(bogus)


def test_spectrum_path_dropout_zeroes_whole_clips_in_training_only() -> None:
    torch.manual_seed(0)
    audio = Conv2D10Spectrum((8, 8, 8, 8, 8), freq_bins=16, spectrum_dim=4)
    x = torch.rand(64, 1, 20, 16)
    audio.eval()
    plain = audio(x)
    audio.path_dropout = 0.5
    assert torch.equal(audio(x), plain)  # eval mode: no dropout
    audio.train()
    out = audio(x)
    spectrum, conv = out[:, 8:], out[:, :8]
    dropped = (spectrum == 0).all(dim=1)
    assert 10 < int(dropped.sum()) < 54  # whole clips, about half of them
    assert bool((spectrum[~dropped] != 0).any(dim=1).all())
    reference = audio.spectrum(x)  # the same BN batch statistics, undropped
    assert torch.allclose(spectrum[~dropped], 2.0 * reference[~dropped])
    assert torch.allclose(conv, audio.conv(x))  # the 2-D path is never dropped


def test_the_embedder_takes_the_summary_towers_in_channels_last() -> None:
    """The summary towers hold 1-D convolutions (no channels-last layout): loading them for
    inference with channels_last on must work (it raised before) and give the eager vectors."""
    from avid_model.inference import Embedder, InferenceSettings

    model = create_model("avid-summary-spectrum").eval()
    video, audio = torch.rand(3, 3, 16, 32, 32), torch.rand(3, 1, 100, 129)
    settings = InferenceSettings(device="cpu", precision="fp32", channels_last=True)
    embedder = Embedder(model, settings)
    with torch.no_grad():
        expected_v, expected_a = model(video, audio)
    assert torch.allclose(embedder.embed_video(video), expected_v, atol=1e-4)
    assert torch.allclose(embedder.embed_audio(audio), expected_a, atol=1e-4)


def test_untrained_model_runs_its_own_preprocessing() -> None:
    """Without trained statistics the identity ones have the model's own frequency bins."""
    model = create_model("avid-summary-spectrum").eval()
    bins = model.preprocess.freq_bins
    assert bins != 257
    assert model.spectrogram_stats.mean.shape == (bins,)
    spec = audio_batch(
        [torch.randn(model.preprocess.audio_samples)], model.preprocess, model.spectrogram_stats
    )
    assert model.encode_audio(spec).shape == (1, model.config.embed_dim)
