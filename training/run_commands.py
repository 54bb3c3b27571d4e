"""``avid train`` and ``avid export``: training runs from YAML configs, and their export."""

from __future__ import annotations

import argparse
from pathlib import Path

from avid_model.checkpoint import CheckpointError
from avid_model.command_args import CommandError
from avid_model.errors import MediaError
from training.config import ConfigError, load_config
from training.run_state import RunStateError


def _train(args: argparse.Namespace) -> int:
    from training.trainer import NonFiniteLossError, train

    try:
        config = load_config(args.config, args.set or [])
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    try:
        result = train(config)
    except NonFiniteLossError as exc:
        raise CommandError(f"stopped: {exc}") from exc
    except (ValueError, RunStateError, MediaError, CheckpointError) as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"{result.stopped}: {result.epochs_done} epoch(s), {result.steps} steps, "
        f"last loss {result.last_loss:.4f}, {result.clips_per_second:.1f} clips/s, "
        f"{result.wall_seconds / 60:.1f} min; run in {result.run_dir}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run

    try:
        meta = export_run(args.run_dir, args.out)
    except (RunStateError, CheckpointError, KeyError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {args.out}: {meta['model_version']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from avid_model.checkpoint import load_checkpoint
    from avid_model.registry import UnknownModelError, create_model
    from training.data import dataset_spectrogram_stats
    from training.evaluate import evaluate_features, extract_features, results_markdown
    from training.sources import load_records

    try:
        train_records = load_records(args.data, args.train_split)
        test_records = load_records(args.data, args.test_split)
        if args.checkpoint.startswith("random:"):
            torch.manual_seed(args.seed)
            model = create_model(args.checkpoint.removeprefix("random:"))
            model.spectrogram_stats = dataset_spectrogram_stats(
                train_records, model.preprocess, clips=256, seed=args.seed
            )
        else:
            model = load_checkpoint(args.checkpoint)
        device = torch.device(args.device)
        common = {"clips_per_video": args.clips, "workers": args.workers, "device": device}
        train_features = extract_features(model, train_records, **common)
        test_features = extract_features(model, test_records, **common)
    except (ValueError, CheckpointError, UnknownModelError, MediaError) as exc:
        raise CommandError(str(exc)) from exc
    results = evaluate_features(train_features, test_features, seed=args.seed)
    results["model_version"] = model.model_version
    table = results_markdown(results)
    print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        help="train AVID / AVID+CMA / the correspondence baseline from a YAML config",
        description="Train from a YAML config (see configs/). Under torchrun, one process per "
        "GPU trains with DDP. Re-running the same command resumes from the run's checkpoint.",
    )
    p.add_argument("config", type=Path, help="a YAML run configuration")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "eval",
        help="linear probes, kNN and cross-modal retrieval of a checkpoint on labelled data",
    )
    p.add_argument(
        "checkpoint", help="a checkpoint directory, or random:MODEL for a random initialisation"
    )
    p.add_argument("--data", required=True, help="manifest.jsonl / CSV / folder with labels")
    p.add_argument("--train-split", default="train", help="split the probes are fitted on")
    p.add_argument("--test-split", default="test", help="split that is measured")
    p.add_argument("--clips", type=int, default=1, help="test clips averaged per video")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--markdown", type=Path, help="write the table here")
    p.set_defaults(func=_eval)

    p = subparsers.add_parser("export", help="write a run's serving checkpoint")
    p.add_argument("run_dir", type=Path, help="a training run directory")
    p.add_argument("out", type=Path, help="the checkpoint directory to write")
    p.set_defaults(func=_export)
