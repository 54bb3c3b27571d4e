"""Encoder throughput: eager fp32 against the serving setup, per encoder and batch size.

    .venv/bin/python -m bench.encode                 # CPU, avid-r2p1d18, batches 1 8 32
    .venv/bin/python -m bench.encode --device cuda   # GPU: adds FLOP/s and fraction of peak

Each row reports clips/s, the speed-up over eager fp32 at the same batch size, and the
smallest cosine similarity between the setup's embeddings and eager fp32's.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from avid_model import create_model
from avid_model.inference import Embedder, InferenceSettings, cpu_has_native_bf16
from bench.common import markdown_table, time_per_call, write_json

# Dense bf16 tensor-core peaks (FLOP/s) for the fraction-of-peak column.
GPU_BF16_PEAK = {"H100 SXM": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989e12}

SETUPS: dict[str, InferenceSettings] = {
    "fp32 channels-last": InferenceSettings(
        precision="fp32", channels_last=True, fuse_batchnorm=False
    ),
    "bf16": InferenceSettings(precision="bf16", channels_last=False, fuse_batchnorm=False),
    "bf16 channels-last": InferenceSettings(
        precision="bf16", channels_last=True, fuse_batchnorm=False
    ),
    "bf16 channels-last BN-folded (serving default)": InferenceSettings(
        precision="bf16", channels_last=True, fuse_batchnorm=True
    ),
    "bf16 channels-last BN-folded compiled": InferenceSettings(
        precision="bf16", channels_last=True, fuse_batchnorm=True, compile=True
    ),
}


def gpu_peak(name: str) -> float | None:
    for key, peak in GPU_BF16_PEAK.items():
        if all(part in name for part in key.split()):
            return peak
    return None


def flops_per_clip(fn: Any, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn(x)
    return counter.get_total_flops() / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="avid-r2p1d18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--compile-batches", type=int, nargs="*", default=[8])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per row")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--json", type=Path, default=Path("bench/results/encode.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    eager = model.to(device)
    inputs = {
        "video": lambda b: torch.randn(b, 3, 8, 112, 112, device=device),
        "audio": lambda b: torch.randn(b, 1, 200, 257, device=device),
    }
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = gpu_peak(gpu_name) if gpu_name else None
    rows: list[dict[str, Any]] = []
    for modality, make in inputs.items():
        encode = eager.encode_video if modality == "video" else eager.encode_audio
        flops = flops_per_clip(encode, make(1))
        for batch in args.batches:
            x = make(batch)
            with torch.no_grad():
                reference = encode(x).float()

            def run_eager(encode: Any = encode, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    encode(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            base = time_per_call(run_eager, min_seconds=args.seconds)
            rows.append(_row(modality, batch, "eager fp32", base, base, 1.0, flops, peak))
            for name, settings in SETUPS.items():
                if settings.compile and batch not in args.compile_batches:
                    continue
                settings = InferenceSettings(
                    device=str(device),
                    precision=settings.precision,
                    channels_last=settings.channels_last,
                    compile=settings.compile,
                    fuse_batchnorm=settings.fuse_batchnorm,
                    batch_size=batch,
                )
                embedder = Embedder(model, settings)
                embed = embedder.embed_video if modality == "video" else embedder.embed_audio
                out = embed(x)  # also the compile warm-up
                cosine = float(F.cosine_similarity(out, reference.cpu()).min())

                def run_setup(embed: Any = embed, x: torch.Tensor = x) -> None:
                    embed(x)

                seconds = time_per_call(run_setup, min_seconds=args.seconds)
                rows.append(_row(modality, batch, name, seconds, base, cosine, flops, peak))
                print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    header = (
        f"model {args.model}, device {gpu_name or platform.processor() or 'cpu'}, "
        f"threads {torch.get_num_threads()}, native bf16 on CPU: {cpu_has_native_bf16()}, "
        f"torch {torch.__version__}"
    )
    print(f"\n{header}\n")
    print(markdown_table(rows, COLUMNS))
    write_json(args.json, {"header": header, "rows": rows})


COLUMNS = ["encoder", "batch", "setup", "clips/s", "speed-up", "min cosine", "GFLOP/s", "of peak"]


def _row(
    modality: str,
    batch: int,
    setup: str,
    seconds: float,
    base: float,
    cosine: float,
    flops: float,
    peak: float | None,
) -> dict[str, Any]:
    rate = batch / seconds
    return {
        "encoder": modality,
        "batch": batch,
        "setup": setup,
        "clips/s": rate,
        "speed-up": base / seconds,
        "min cosine": round(cosine, 5),
        "GFLOP/s": rate * flops / 1e9,
        "of peak": f"{rate * flops / peak:.1%}" if peak else "",
    }


if __name__ == "__main__":
    main()
