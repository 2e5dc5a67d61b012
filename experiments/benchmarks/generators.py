"""Images per second per core of each online anomaly generator (target: 20 per core at 768 px).

Each generator runs on one already-decoded image (default 768x768) in this single process with
numpy/BLAS/torch limited to one thread, so the rate is per core. Every repeat times ``--calls``
calls with fresh seeds; the table gives the median over repeats of the rate in CPU time (what
one core delivers, robust to other processes on a shared machine) and in wall time. The target
is 20 images/s per core, so that a GPU node's CPU workers outrun training.

``--inpaint`` times a diffusers inpainting pipeline of Stable Diffusion 1.5 size with random
weights (the same compute as real weights) on CUDA; without a GPU it prints "no GPU: not
measured".

``--rev REV`` compares against a git revision in the same run: the ``data_synthesis`` package
as of ``REV`` (``git archive``) and this tree's are timed in child processes taking turns, one
repeat each, so both see the same machine load; the table gives both rates.

Examples::

    .venv/bin/python experiments/benchmarks/generators.py --size 768 --repeats 5 --profile
    .venv/bin/python experiments/benchmarks/generators.py --size 768 --repeats 5 --rev main
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before numpy/torch load their thread pools: one thread each, so the figures are per core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
TARGET = 20.0
# Inpainting: SD-1.5 inpainting sizes (UNet 860M parameters with 9 input channels, VAE 84M).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE = {
    "sample_size": 512,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
}
# Same architecture at toy width, so the timing code itself is testable on CPU in seconds.
TINY_UNET = {**SD15_UNET, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1}
TINY_UNET.update(cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8)
TINY_VAE = {**SD15_VAE, "block_out_channels": (8, 8, 16, 16), "layers_per_block": 1}
TINY_VAE["norm_num_groups"] = 8
# (label, dtype, SDPA, batch): diffusers' defaults first (fp32, SDPA, one image per call).
INPAINT_SETTINGS = [
    ("fp32, default attention (SDPA)", "float32", True, 1),
    ("fp32, classic attention", "float32", False, 1),
    ("fp32, SDPA", "float32", True, 4),
    ("fp16, SDPA", "float16", True, 1),
    ("fp16, SDPA", "float16", True, 4),
    ("bf16, SDPA", "bfloat16", True, 1),
    ("bf16, SDPA", "bfloat16", True, 4),
]


def build_generators(dtd: Path | None) -> dict[str, Callable[..., Any]]:
    """The online generators, named as in the table."""
    from data_synthesis.cutpaste import MASK_TYPES, CutPasteGenerator
    from data_synthesis.noise import NoiseTextureGenerator

    gens: dict[str, Callable[..., Any]] = {"noise (procedural)": NoiseTextureGenerator()}
    if dtd is not None and dtd.is_dir():
        gens["noise (dtd folder)"] = NoiseTextureGenerator(texture_dir=str(dtd))
    else:
        print(f"texture folder {dtd} not found: skipping noise (dtd folder)")
    for mask_type in MASK_TYPES:
        gens[f"cutpaste ({mask_type})"] = CutPasteGenerator(mask_type=mask_type)  # type: ignore[arg-type]
    return gens


def bench_image(size: int, path: Path | None) -> np.ndarray:
    """A decoded (size, size, 3) float32 image: ``path`` or an MTD tile resized, else synthetic."""
    from data_synthesis.io import list_images, load_image

    tile_dir = SHARED / "mtd" / "MT_Free" / "Imgs"
    if path is None and tile_dir.is_dir():
        files = list_images(tile_dir, recursive=False, allow_empty=True)
        tiles = [p for p in files if p.suffix.lower() == ".jpg"]
        path = tiles[0] if tiles else None
    if path is not None:
        return load_image(path, (size, size))
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.2 * np.sin(6 * xx + 4 * yy)[..., None] * np.array([1.0, 0.8, 0.6])
    return base.astype(np.float32)


def time_generator(
    gen: Callable[..., Any], image: np.ndarray, calls: int, repeats: int, first: int = 0
) -> dict[str, float]:
    """Median images/s over ``repeats`` runs of ``calls`` calls, in CPU time and in wall time.

    Repeat ``r`` seeds its calls with ``[r, i]``, for ``r`` from ``first``.
    """
    gen(image, np.random.default_rng(10**6))  # warm-up: file lists, caches, lazy imports
    cpu_rates, wall_rates = [], []
    for r in range(first, first + repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(calls):
            gen(image, np.random.default_rng([r, i]))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        cpu_rates.append(calls / max(cpu, 1e-9))
        wall_rates.append(calls / max(wall, 1e-9))
    return {
        "cpu": statistics.median(cpu_rates),
        "wall": statistics.median(wall_rates),
        "min": min(cpu_rates),
        "max": max(cpu_rates),
    }


def profile_generator(gen: Callable[..., Any], image: np.ndarray, calls: int, top: int) -> str:
    """cProfile of ``calls`` calls, the ``top`` functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        gen(image, np.random.default_rng([99, i]))
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def table(rows: dict[str, dict[str, float]], size: int) -> str:
    """Markdown table of the measured rates."""
    lines = [
        f"| generator ({size}x{size}) | img/s per core (CPU time) | img/s (wall) "
        "| CPU-time range | ms per image | >= 20/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        ok = "yes" if r["cpu"] >= TARGET else "**no**"
        lines.append(
            f"| {name} | {r['cpu']:.1f} | {r['wall']:.1f} | {r['min']:.1f}-{r['max']:.1f} "
            f"| {1000 / r['cpu']:.1f} | {ok} |"
        )
    return "\n".join(lines)


def build_inpaint_pipeline(tiny: bool = False, seed: int = 0) -> Any:
    """A randomly initialised SD-1.5-sized inpainting pipeline (no text encoder: prompts are
    passed as embeddings, whose cost is negligible next to 20 UNet steps)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET))
    vae = AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def inpaint_rate(
    pipe: Any,
    size: int,
    batch: int,
    steps: int,
    dtype: str,
    sdpa: bool,
    calls: int,
    device: str,
    compile_unet: bool = False,
) -> float:
    """Images per second of guided inpainting at ``size`` px (median over ``calls`` calls).

    ``compile_unet`` puts the UNet in channels-last layout and compiles it in place
    (``nn.Module.compile``); the warm-up call then includes the compilation. It stays compiled
    for later calls on the same pipeline, so time compiled settings last.
    """
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe.to(device, getattr(torch, dtype))
    pipe.unet.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())
    if compile_unet:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.unet.compile()
    width = pipe.unet.config.cross_attention_dim
    gen = torch.Generator(device).manual_seed(0)
    embeds = torch.randn(batch, 77, width, generator=gen, device=device).to(pipe.unet.dtype)
    image = torch.rand(batch, 3, size, size, generator=gen, device=device)
    mask = torch.zeros(batch, 1, size, size, device=device)
    mask[..., size // 4 : size // 2, size // 4 : size // 2] = 1.0
    kwargs = {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": torch.zeros_like(embeds),
        "image": image,
        "mask_image": mask,
        "height": size,
        "width": size,
        "num_inference_steps": steps,
        "guidance_scale": 7.5,
        "output_type": "np",
    }
    pipe.set_progress_bar_config(disable=True)
    pipe(**kwargs)  # warm-up: cuDNN autotuning, allocator
    times = []
    for _ in range(calls):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(**kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def inpaint_section(quick: bool = False, device: str | None = None) -> str:
    """Markdown table of inpainting images/s, or "no GPU: not measured" without CUDA."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # one dtype-cast notice per setting otherwise
    device = device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        return "inpainting (SD-1.5 size, random weights): no GPU: not measured"
    tiny = quick or device != "cuda"
    pipe = build_inpaint_pipeline(tiny=tiny)
    sizes, steps, calls = ((64,), 2, 1) if tiny else ((512, 1024), 20, 3)
    name = "toy-width SD-1.5 layout" if tiny else "SD-1.5 size"
    lines = [
        f"inpainting ({name}, random weights, {steps} guided steps, {device}):",
        "",
        "| setting | batch | " + " | ".join(f"img/s at {s}" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for label, dtype, sdpa, batch in INPAINT_SETTINGS:
        if device == "cpu" and dtype == "float16":
            continue  # half-precision convolutions are GPU-only in practice
        rates = [inpaint_rate(pipe, s, batch, steps, dtype, sdpa, calls, device) for s in sizes]
        lines.append(f"| {label} | {batch} | " + " | ".join(f"{r:.2f}" for r in rates) + " |")
    return "\n".join(lines)


def compare_revision(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Rates of ``args.rev``'s generators and this tree's, child processes taking turns."""
    old_root = Path(tempfile.mkdtemp(prefix="generators_rev_"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", args.rev, "data_synthesis"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old_root, filter="data")
    base = [sys.executable, __file__, "--json", "--repeats", "1", "--calls", str(args.calls)]
    base += ["--size", str(args.size), "--dtd", str(args.dtd)]
    if args.image is not None:
        base += ["--image", str(args.image)]
    trees = {args.rev: old_root, "tree": REPO}
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(args.repeats):
        for label, root in trees.items():
            env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{REPO}"}
            proc = subprocess.run(
                [*base, "--first-repeat", str(r)], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise SystemExit(f"{label}: {proc.stderr.strip().splitlines()[-1]}")
            for name, row in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                cpu.setdefault((name, label), []).append(row["cpu"])
    names = list(dict.fromkeys(name for name, _ in cpu))
    rows = {}
    lines = [
        f"| generator ({args.size}x{args.size}) | {args.rev}: img/s per core | "
        "this tree: img/s per core | this tree >= 20/s |",
        "|---|---|---|---|",
    ]
    for name in names:
        before = statistics.median(cpu.get((name, args.rev), [float("nan")]))
        after = statistics.median(cpu[(name, "tree")])
        rows[name] = {"before": before, "after": after}
        ok = "yes" if after >= TARGET else "**no**"
        lines.append(f"| {name} | {before:.1f} | {after:.1f} | {ok} |")
    print("\n".join(lines))
    return rows


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=768, help="square image side")
    parser.add_argument("--calls", type=int, default=10, help="generator calls per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtd", type=Path, default=SHARED / "dtd", help="texture folder")
    parser.add_argument("--image", type=Path, default=None, help="image to synthesise on")
    parser.add_argument("--quick", action="store_true", help="64 px, 2 calls, 1 repeat")
    parser.add_argument("--profile", action="store_true", help="cProfile generators below 20/s")
    parser.add_argument("--inpaint", action="store_true", help="also time diffusion inpainting")
    parser.add_argument("--rev", help="also time the generators of this git revision")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-repeat", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.calls, args.repeats = 64, 2, 1
    if args.rev:
        return compare_revision(args)
    if "torch" in sys.modules:  # only when something imported it; its import costs seconds
        sys.modules["torch"].set_num_threads(1)
    image = bench_image(args.size, args.image)
    rows = {}
    for name, gen in build_generators(args.dtd).items():
        rows[name] = time_generator(gen, image, args.calls, args.repeats, args.first_repeat)
        if not args.json:
            print(f"{name}: {rows[name]['cpu']:.1f} img/s per core", flush=True)
    if args.json:
        print(json.dumps(rows))
        return rows
    print(table(rows, args.size))
    if args.profile:
        for name, gen in build_generators(args.dtd).items():
            if rows[name]["cpu"] < TARGET:
                print(f"\n### profile: {name}\n")
                print(profile_generator(gen, image, args.calls, top=15))
    if args.inpaint:
        print(inpaint_section(quick=args.quick))
    return rows


if __name__ == "__main__":
    main()
