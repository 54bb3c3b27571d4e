"""`avid data ...` commands contributed by the training package (entry point: register)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from avid_model.command_args import CommandError, positive_int


def _avdigits(args: argparse.Namespace) -> int:
    from training import avdigits
    from training.avdigits_audio import EspeakNotFoundError

    if args.clips < 1:
        raise CommandError(f"--clips must be at least 1, got {args.clips}")
    if args.seed < 0:
        raise CommandError(f"--seed must be a non-negative integer, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a directory")
    try:
        settings = avdigits.RenderSettings(size=args.size, fps=args.fps, duration=args.duration)
        manifest = avdigits.generate(
            out,
            clips=args.clips,
            seed=args.seed,
            workers=args.workers,
            settings=settings,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (ValueError, EspeakNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    except FileExistsError as exc:
        raise CommandError(f"{exc}; pass --overwrite to replace it") from exc
    except OSError as exc:
        raise CommandError(f"cannot write to {out}: {exc}") from exc
    print(f"wrote {args.clips} clips and {manifest}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `data` (with `data avdigits`) to the `avid` command line."""
    data = subparsers.add_parser(
        "data", help="build data sets", description="Build data sets for training and evaluation."
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    avdigits = data_commands.add_parser(
        "avdigits",
        help="generate AV-Digits (spoken digit + pulsing handwritten digit clips)",
        description=(
            "Generate AV-Digits: MP4 clips (h264 + AAC, 24 kHz) in which an espeak-ng voice says "
            "a digit and a handwritten digit of the same class pulses with the word, next to a "
            "distractor digit that never pulses. Writes DIR/{train,val,test}/*.mp4, "
            "DIR/manifest.jsonl and DIR/dataset.json. Needs the espeak-ng program."
        ),
    )
    avdigits.add_argument("--out", required=True, metavar="DIR", help="output folder")
    avdigits.add_argument(
        "--clips", type=int, required=True, metavar="N", help="number of clips (>= 1)"
    )
    avdigits.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    avdigits.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default: all cores)",
    )
    avdigits.add_argument(
        "--size", type=int, default=128, help="frame width and height in pixels (default: 128)"
    )
    avdigits.add_argument("--fps", type=float, default=16.0, help="video frame rate (default: 16)")
    avdigits.add_argument(
        "--duration", type=float, default=2.5, help="clip length in seconds (default: 2.5)"
    )
    avdigits.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a data set already in DIR (clips of an earlier, larger run stay on disk)",
    )
    avdigits.add_argument("--quiet", action="store_true", help="no progress bar")
    avdigits.set_defaults(func=_avdigits)


def main(argv: Sequence[str] | None = None) -> int:
    """Run these commands without the `avid` entry point (``python -m training.cli data ...``)."""
    parser = argparse.ArgumentParser(prog="avid")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except CommandError as exc:
        print(f"avid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
