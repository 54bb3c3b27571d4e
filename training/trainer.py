"""The training loop for AVID, AVID+CMA and the correspondence baseline (one loop, plain PyTorch).

Per step: decode + augment (DataLoader workers) -> both encoders (bf16 autocast and
channels-last on CUDA) -> the method's loss over the memory banks -> Adam -> memory update
(all-gathered under DDP). A JSON-lines log, a checkpoint every epoch (and when a time budget
runs out), exact resume, and a clear stop on a non-finite loss. A learning / collapse monitor
(training/monitor.py): each ``step`` event carries the batch's embedding spread, and before each
checkpoint the main rank writes a ``monitor`` event from held-out clips.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from avid_model.audio_encoder import Conv2D10Spectrum
from avid_model.features import SpectrogramStats
from avid_model.inference import to_channels_last
from avid_model.model import AVIDModel
from avid_model.registry import create_model
from training.augment import AugmentConfig
from training.clips import MediaCache
from training.config import ConfigError, TrainConfig, config_to_dict
from training.data import AVClipDataset, dataset_spectrogram_stats
from training.distributed import DistContext, barrier, init_distributed, resolve_device, shutdown
from training.monitor import batch_spread, monitor_records, report_health
from training.objectives import TrainingObjective
from training.run_state import (
    CHECKPOINT_FILE,
    load_run_state,
    restore_rng,
    rng_state,
    save_run_state,
)
from training.schedule import LRSchedule
from training.sources import VideoRecord, load_records

LOG_FILE = "log.jsonl"
# data.augment=false: full-frame crops, no flip, no colour or volume jitter.
NO_AUGMENT = AugmentConfig(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_p=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    volume=(1.0, 1.0),
)


def _augment_config(config: TrainConfig) -> AugmentConfig:
    data = config.data
    if not data.augment:
        return NO_AUGMENT
    return replace(
        AugmentConfig(),
        crop_scale=data.crop_scale,
        flip_p=data.flip_p,
        hue=data.hue,
        channel_p=data.channel_p,
    )


class NonFiniteLossError(RuntimeError):
    """Training stopped: the loss became NaN or infinite (the last checkpoint is kept)."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps: int
    stopped: str  # "completed", "time budget"
    last_loss: float
    clips_per_second: float
    wall_seconds: float
    peak_gpu_bytes: int


class _SkipSampler(Sampler[int]):  # wraps index samplers of any dataset
    """The wrapped sampler's indices without the first ``skip`` (mid-epoch resume)."""

    def __init__(self, inner: Sampler[Any], skip: int) -> None:
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)  # type: ignore[arg-type]


class _JsonLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _any_rank(ctx: DistContext, flag: bool, device: torch.device) -> bool:
    if not ctx.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def prepare_model(config: TrainConfig) -> AVIDModel:
    """A fresh model of the run's configuration, with the run's preprocessing overrides."""
    model = create_model(config.model.name)
    section = config.model
    preprocess = model.preprocess
    if section.crop_size:
        preprocess = replace(preprocess, crop_size=section.crop_size)
    if section.clip_frames:
        preprocess = replace(preprocess, clip_frames=section.clip_frames)
    if section.fps:
        preprocess = replace(preprocess, fps=section.fps)
    model.preprocess = preprocess
    if section.spectrum_dropout:
        if not isinstance(model.audio_encoder, Conv2D10Spectrum):
            raise ConfigError(
                f"model.spectrum_dropout needs an audio tower with a spectrum path; "
                f"{config.model.name} has {model.config.audio_arch!r}"
            )
        model.audio_encoder.path_dropout = section.spectrum_dropout
    return model


def _initial_state(config: TrainConfig, run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """The state to resume from (this run's checkpoint) or to start CMA from (an AVID run)."""
    if config.run.resume and (run_dir / CHECKPOINT_FILE).is_file():
        return load_run_state(run_dir), "resume"
    if config.loss.method == "cma":
        if not config.loss.cma.init_from:
            raise ValueError("loss.method=cma needs loss.cma.init_from (an AVID run directory)")
        return load_run_state(config.loss.cma.init_from), "init"
    return None, "fresh"


def train(config: TrainConfig, *, media_cache: MediaCache | None = None) -> TrainResult:
    """Run (or resume) one training run as configured; returns a summary.

    With ``data.cache``, files are decoded once into `media_cache` (a new one if None), which
    the held-out monitor reads too; pass one cache to many runs on the same files (as the
    results table does) to decode them once in all.
    """
    device = resolve_device(config.run.device)
    ctx = init_distributed(device)
    # One place decides: without data.cache nothing is cached, whatever the caller passed.
    if not config.data.cache:
        media_cache = None
    elif media_cache is None:
        media_cache = MediaCache()
    try:
        return _train(config, device, ctx, media_cache)
    finally:
        shutdown(ctx)


def _train(
    config: TrainConfig, device: torch.device, ctx: DistContext, media_cache: MediaCache | None
) -> TrainResult:
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    run_dir = Path(config.run.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _JsonLog(run_dir / LOG_FILE, ctx.is_main)
    torch.manual_seed(config.run.seed + ctx.rank)
    state, origin = _initial_state(config, run_dir)

    model = prepare_model(config)
    records = load_records(config.data.manifest, config.data.split)
    if config.loss.method == "supervised" and any(r.label < 0 for r in records):
        raise ValueError(
            f"loss.method=supervised needs a label on every clip; {config.data.manifest} "
            f"(split {config.data.split!r}) has clips without one"
        )
    if state is not None:
        stats = SpectrogramStats.from_dict(state["spectrogram_stats"])
    else:
        stats = dataset_spectrogram_stats(
            records, model.preprocess, clips=config.data.stats_clips, seed=config.run.seed
        )
    model.spectrogram_stats = stats
    objective = TrainingObjective(
        config.loss,
        len(records),
        model.config.embed_dim,
        seed=config.run.seed,
        num_classes=max((r.label for r in records), default=-1) + 1,
    )
    if state is not None:
        model.load_state_dict(state["model"])
        if state["memory"]["video"].shape[0] != len(records):
            raise ValueError(
                f"the checkpoint's memory has {state['memory']['video'].shape[0]} instances, "
                f"the data {len(records)}: not the same training set"
            )
        objective.memory.load_state_dict(state["memory"])
        if origin == "init" and state.get("z", 0.0) > 0 and config.loss.method == "cma":
            objective.loss.z.fill_(float(state["z"]))  # type: ignore[operator]
    cuda = device.type == "cuda"
    model.to(device)
    if cuda and config.run.channels_last:
        to_channels_last(model.video_encoder)
        to_channels_last(model.audio_encoder)
    objective.to(device)
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    start_epoch, step, skip_batches = 0, 0, 0
    if origin == "resume" and state is not None:
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        skip_batches = int(state.get("batches_done", 0))
        restore_rng(state["rng"], objective.sampler)
    forward_model: torch.nn.Module = model
    if ctx.enabled:
        forward_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if config.run.compile:
        forward_model = torch.compile(forward_model)  # type: ignore[assignment]

    dataset = AVClipDataset(
        records,
        model.preprocess,
        stats,
        train=True,
        clips_per_video=config.data.clips_per_video,
        max_desync=config.data.max_desync,
        cache=config.data.cache,
        seed=config.run.seed,
        augment=_augment_config(config),
        media_cache=media_cache,
    )
    if config.data.cache:
        dataset.fill_cache(workers=config.data.workers)
    per_rank_batch = config.optim.batch_size // ctx.world_size
    if per_rank_batch < 2 or len(dataset) // ctx.world_size < per_rank_batch:
        raise ValueError(
            f"batch {config.optim.batch_size} over {ctx.world_size} rank(s) does not fit "
            f"{len(dataset)} clips: lower optim.batch_size"
        )
    sampler: DistributedSampler[dict[str, Any]] = DistributedSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=config.run.seed,
        drop_last=True,
    )
    if ctx.is_main:
        (run_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
    log.write(
        "start",
        origin=origin,
        epoch=start_epoch,
        step=step,
        device=str(device),
        world_size=ctx.world_size,
        instances=len(records),
        clips_per_epoch=len(dataset),
        negatives=objective.negatives,
        config=config_to_dict(config),
    )
    held_out: list[VideoRecord] = []  # the monitor's clips; main rank only (no collectives)
    if ctx.is_main and config.run.monitor_clips > 0:
        held_out, monitor_off = monitor_records(
            config.data.manifest, config.run.monitor_split, config.run.monitor_clips
        )
        if monitor_off:
            log.write("monitor_off", reason=monitor_off)
            tqdm.write(monitor_off)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and config.run.bf16)
    started = time.perf_counter()
    budget = config.run.max_minutes * 60.0
    schedule = LRSchedule(
        config.optim.lr,
        config.optim.schedule,
        config.optim.warmup_steps,
        planned_steps=max(config.optim.epochs * (len(dataset) // config.optim.batch_size), 1),
        budget_s=budget,
    )
    stopped, last_loss, clips_seen = "completed", math.nan, 0
    window_clips, window_start = 0, time.perf_counter()
    # Seconds of the log window spent waiting for the loader's next batch: the share of wall
    # time the encoders sat idle for decoding and augmentation (logged as data_wait).
    window_wait = 0.0
    epochs_done = start_epoch
    for epoch in range(start_epoch, config.optim.epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        resample_now = epoch % config.loss.cma.resample_freq == 0 and skip_batches == 0
        if config.loss.method == "cma" and (not objective.memory.has_positive_sets or resample_now):
            objective.resample_positives()
            log.write("positives", epoch=epoch, step=step)
        loader = DataLoader(
            dataset,
            batch_size=per_rank_batch,
            sampler=_SkipSampler(sampler, skip_batches * per_rank_batch),
            num_workers=config.data.workers,
            drop_last=True,
            pin_memory=cuda,
            persistent_workers=False,
        )
        batches_done = skip_batches
        skip_batches = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.optim.epochs}",
            disable=not (ctx.is_main and config.run.progress),
            leave=False,
        )
        fetch_started = time.perf_counter()
        for batch in bar:
            window_wait += time.perf_counter() - fetch_started
            video = batch["video"].to(device, non_blocking=True)
            audio = batch["audio"].to(device, non_blocking=True)
            ids = batch["index"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            if cuda and config.run.channels_last:
                video = video.contiguous(memory_format=torch.channels_last_3d)
            if config.loss.z_reestimate_step and step == config.loss.z_reestimate_step:
                objective.reset_z()
                log.write("z_reset", epoch=epoch, step=step)
            model.train()
            with autocast:
                v, a = forward_model(video, audio)
            loss, terms = objective(v.float(), a.float(), ids, labels)
            if _any_rank(ctx, not bool(torch.isfinite(loss)), device):
                detail = {k: float(t) for k, t in terms.items() if t.numel() == 1}
                log.write("stop", reason="non-finite loss", epoch=epoch, step=step, terms=detail)
                raise NonFiniteLossError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step}; "
                    f"terms {detail}; the last checkpoint in {run_dir} is kept"
                )
            lr = schedule.lr(step, time.perf_counter() - started)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            objective.after_step(v.detach(), a.detach(), ids)
            step += 1
            batches_done += 1
            last_loss = float(loss.detach())
            clips_seen += video.shape[0] * ctx.world_size
            window_clips += video.shape[0] * ctx.world_size
            if step % config.run.log_every == 0:
                now = time.perf_counter()
                rate = window_clips / max(now - window_start, 1e-9)
                data_wait = window_wait / max(now - window_start, 1e-9)
                window_clips, window_start, window_wait = 0, now, 0.0
                fields = {k: round(float(t), 6) for k, t in terms.items() if t.numel() == 1}
                fields["video_spread"] = round(batch_spread(v), 6)
                fields["audio_spread"] = round(batch_spread(a), 6)
                log.write(
                    "step",
                    epoch=epoch,
                    step=step,
                    loss=last_loss,
                    clips_per_s=rate,
                    data_wait=round(data_wait, 4),
                    lr=lr,
                    **fields,
                )
                bar.set_postfix(
                    loss=f"{last_loss:.4f}",
                    clips_s=f"{rate:.1f}",
                    wait=f"{data_wait:.0%}",
                    v_cos=f"{fields['video_spread']:.2f}",
                    a_cos=f"{fields['audio_spread']:.2f}",
                )
            out_of_time = budget > 0 and time.perf_counter() - started > budget
            if _any_rank(ctx, out_of_time, device):
                stopped = "time budget"
                break
            fetch_started = time.perf_counter()
        finished_epoch = stopped == "completed"
        if held_out:  # main rank; the others wait in _save's barrier
            report_health(
                model,
                held_out,
                log.write,
                epoch=epoch + 1,
                step=step,
                threshold=config.run.collapse_cosine,
                batch_size=per_rank_batch,
                workers=config.data.workers,
                device=device,
                media_cache=media_cache,
            )
        _save(
            run_dir,
            ctx,
            config,
            model,
            optimizer,
            objective,
            stats,
            epoch + 1 if finished_epoch else epoch,
            step,
            0 if finished_epoch else batches_done,
        )
        log.write("epoch", epoch=epoch + 1, step=step, loss=last_loss, complete=finished_epoch)
        if not finished_epoch:
            break
        epochs_done = epoch + 1
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    result = TrainResult(
        run_dir=run_dir,
        epochs_done=epochs_done,
        steps=step,
        stopped=stopped,
        last_loss=last_loss,
        clips_per_second=clips_seen / max(wall, 1e-9),
        wall_seconds=wall,
        peak_gpu_bytes=int(peak),
    )
    log.write("end", **{k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()})
    return result


def _save(
    run_dir: Path,
    ctx: DistContext,
    config: TrainConfig,
    model: AVIDModel,
    optimizer: torch.optim.Optimizer,
    objective: TrainingObjective,
    stats: SpectrogramStats,
    epoch: int,
    step: int,
    batches_done: int,
) -> None:
    if ctx.is_main:
        save_run_state(
            run_dir,
            {
                "config": config_to_dict(config),
                "model_name": model.config.name,
                "preprocess": model.preprocess.to_dict(),
                "spectrogram_stats": stats.to_dict(),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
                "memory": {k: v.detach().cpu() for k, v in objective.memory.state_dict().items()},
                "z": objective.z,
                "epoch": epoch,
                "step": step,
                "batches_done": batches_done,
                "rng": rng_state(objective.sampler),
            },
        )
    barrier(ctx)
