"""``python -m anomalyvfm.bench``: training/inference speed of a config, reference vs ours.

Example (GPU, full size; random weights cost the same compute as pretrained ones)::

    python -m anomalyvfm.bench --config experiments/configs/anomalyvfm_radio.yaml \
        --normal-dir ../shared/data/dtd --infer-batch 32 \
        --eval-config experiments/configs/eval/shared_data.yaml --max-batch
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from anomalyvfm.batch import Batch
from anomalyvfm.bench import loops
from anomalyvfm.bench.report import format_report

# The reference code's execution: fp32, eager, NCHW decoder (ablations/reference_fp32.yaml).
REFERENCE = [
    "--trainer.precision=32-true",
    "--model.init_args.compile=never",
    "--model.init_args.decoder.channels_last=false",
]
# What a 200-step run of the paper recipe trains on, and an MVTec AD-sized test set.
TRAIN_RUN_STEPS, EVAL_SET_IMAGES = 200, 1725


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count_or_fraction(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m anomalyvfm.bench", description=__doc__)
    p.add_argument("--config", action="append", required=True, help="fit config(s), in order")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra CLI override, e.g. --set data.init_args.batch_size=16",
    )
    p.add_argument(
        "--recipes",
        nargs="+",
        default=["reference", "ours"],
        choices=["reference", "ours"],
        help="reference = fp32 eager; ours = config",
    )
    p.add_argument("--normal-dir", help="normal images for online synthesis (data.normal_dir)")
    p.add_argument("--pretrained", action="store_true", help="load pretrained weights")
    p.add_argument(
        "--steps", type=_positive_int, default=16, help="measured micro-batches per loop"
    )
    p.add_argument(
        "--warmup", type=_positive_int, default=8, help="warm-up micro-batches (compilation)"
    )
    p.add_argument(
        "--infer-batch", type=_positive_int, help="inference batch (default data.eval_batch_size)"
    )
    p.add_argument("--infer-steps", type=_positive_int, default=10)
    p.add_argument("--loader-batches", type=_positive_int, default=16)
    p.add_argument(
        "--loader-only",
        action="store_true",
        help="only the DataLoader's images/s (decode, resize, online synthesis)",
    )
    p.add_argument("--eval-config", help="eval suite config to time a test run with")
    p.add_argument(
        "--eval-recipes",
        nargs="+",
        choices=["reference", "ours"],
        help="recipes whose test run is timed (default: every recipe measured)",
    )
    p.add_argument(
        "--eval-batches",
        type=_count_or_fraction,
        help="trainer.limit_test_batches: batches per dataset (int) or fraction",
    )
    p.add_argument(
        "--max-batch",
        action="store_true",
        help="find the largest micro-batch that trains (CUDA only), with and without "
        "activation checkpointing",
    )
    p.add_argument("--max-batch-limit", type=_positive_int, default=256, help="largest size tried")
    p.add_argument("--out", type=Path, help="write all figures as JSON here")
    return p.parse_args(argv)


def build(args: argparse.Namespace, recipe: str, eval_config: bool) -> Any:
    """The CLI objects (trainer, model, datamodule) of ``recipe``, without running anything."""
    from anomalyvfm.cli import main

    cli_args = [f"--config={c}" for c in args.config]
    if eval_config and args.eval_config:
        cli_args.append(f"--config={args.eval_config}")
    cli_args += [f"--{s}" for s in args.set]
    cli_args += [
        # Run files (the saved config) go to a scratch folder, not into ./runs.
        f"--trainer.default_root_dir={args.workdir}",
        "--trainer.logger=false",
        "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false",
    ]
    cli_args.append(f"--model.init_args.backbone.pretrained={str(args.pretrained).lower()}")
    if args.normal_dir:
        cli_args.append(f"--data.init_args.normal_dir={args.normal_dir}")
    if args.eval_batches is not None:
        cli_args.append(f"--trainer.limit_test_batches={args.eval_batches}")
    if recipe == "reference":
        cli_args += REFERENCE
    argv, sys.argv = sys.argv, sys.argv[:1]  # the CLI must not read this script's arguments
    try:
        return main(cli_args, run=False)
    finally:
        sys.argv = argv


def measure(args: argparse.Namespace, recipe: str) -> dict[str, Any]:
    """All figures of one recipe."""
    cli = build(args, recipe, eval_config=False)
    task, dm, trainer = cli.model, cli.datamodule, cli.trainer
    device = trainer.strategy.root_device
    task.to(device)
    task.train()
    dm.setup("fit")
    loader = dm.train_dataloader()
    stepper = loops.TrainStepper(task, trainer)
    plugin = trainer.precision_plugin
    batches = loops.staged_batches(loader, min(4, args.steps), device)
    micro = int(batches[0]["image"].shape[0])
    infer_batch = args.infer_batch or dm.eval_batch_size
    images = torch.cat([b["image"] for b in batches] * infer_batch)[:infer_batch]
    out: dict[str, Any] = {
        "recipe": recipe,
        "precision": str(trainer.precision),
        "compiled": task.compile_modules(device),
        "micro_batch": micro,
        "accumulate": stepper.accumulate,
        "infer_batch": infer_batch,
    }
    # FLOPs are counted eagerly (compiled graphs hide the ATen ops from the counter).
    out["train_tflop_per_image"] = (
        loops.forward_backward_flops(task, batches[0], plugin) / micro / 1e12
    )
    out["infer_tflop_per_image"] = loops.inference_flops(task, images, plugin) / infer_batch / 1e12
    loops.reset_peak_memory(device)
    # The warm-up covers compilation and at least one optimizer step (its state is created then).
    warmup = max(args.warmup, stepper.accumulate)
    out.update(prefix("train", loops.timed_training(stepper, batches, args.steps, warmup)))
    out["train_peak_gib"] = loops.peak_memory_gib(device)
    out["breakdown_ms"] = loops.phase_breakdown(stepper, batches, args.steps)
    fed = loops.fed_training(stepper, loader, args.steps, stepper.accumulate, device)
    out.update(prefix("fed", fed))
    out["breakdown_ms"]["data"] = 1000 * fed["data_wait_fraction"] * micro / fed["images_per_s"]
    out["loader_images_per_s"] = loops.loader_throughput(loader, args.loader_batches)
    loops.reset_peak_memory(device)
    out["infer_images_per_s"] = loops.timed_inference(task, images, plugin, args.infer_steps)
    out["infer_peak_gib"] = loops.peak_memory_gib(device)
    out["train_tflops"] = out["train_tflop_per_image"] * out["train_images_per_s"]
    out["infer_tflops"] = out["infer_tflop_per_image"] * out["infer_images_per_s"]
    if args.max_batch and device.type == "cuda":
        for checkpointing in (False, True):
            key = "max_micro_batch" + ("_grad_checkpointing" if checkpointing else "")
            out[key] = largest_micro_batch(stepper, batches[0], args.max_batch_limit, checkpointing)
    if args.eval_config and recipe in (args.eval_recipes or args.recipes):
        out.update(time_eval(args, recipe, out))
    return out


def prefix(name: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{name}_{k}": v for k, v in values.items()}


def time_eval(args: argparse.Namespace, recipe: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Wall time of a real ``trainer.test`` (data, model, metrics) on a freshly built model, as
    ``anomalyvfm test`` runs it, and its cost relative to a 200-step training run at the
    measured data-fed training speed."""
    cli = build(args, recipe, eval_config=True)
    start = time.perf_counter()
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    seconds = time.perf_counter() - start
    count = sum(sum(c.values()) for c in cli.model.eval_counts.values())
    per_image = seconds / max(count, 1)
    train_images = TRAIN_RUN_STEPS * figures["micro_batch"] * figures["accumulate"]
    train_seconds = train_images / figures["fed_images_per_s"]
    return {
        "eval_compiled": cli.model.compiled,
        "eval_images": count,
        "eval_seconds": seconds,
        "eval_images_per_s": count / seconds,
        "eval_1725_vs_200_steps": EVAL_SET_IMAGES * per_image / train_seconds,
    }


def largest_micro_batch(
    stepper: loops.TrainStepper, batch: Batch, limit: int = 256, grad_checkpointing: bool = False
) -> int:
    """Largest micro-batch whose training step (forward, backward, optimizer) fits in memory.

    The steps run eagerly: a compiled model would recompile for every size tried (minutes at
    full size), and inductor's fused kernels need no more memory than eager ones, so the eager
    answer is a lower bound for the compiled step. ``grad_checkpointing`` switches timm's
    activation checkpointing on for the search (``backbone.grad_checkpointing``).
    """
    timm_model = stepper.task.model.backbone.model
    if grad_checkpointing and not hasattr(timm_model, "set_grad_checkpointing"):
        return 0

    def fits(size: int) -> bool:
        big = {
            k: (torch.cat([v] * -(-size // len(v)))[:size] if torch.is_tensor(v) else v)
            for k, v in batch.items()
        }
        try:
            with torch.compiler.set_stance("force_eager"):
                stepper.step(cast(Batch, big))
            torch.cuda.synchronize()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            stepper.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    if grad_checkpointing:
        timm_model.set_grad_checkpointing(True)
    try:
        return largest_fitting(fits, int(batch["image"].shape[0]), limit)
    finally:
        if grad_checkpointing:
            timm_model.set_grad_checkpointing(stepper.task.model.backbone.config.grad_checkpointing)


def largest_fitting(fits: Callable[[int], bool], start: int, limit: int) -> int:
    """Largest n <= limit with fits(n), for a monotone ``fits``: doubling from ``start``, then
    bisection. Returns 0 when not even ``start`` fits."""
    good, size = 0, start
    while size <= limit and fits(size):
        good, size = size, size * 2
    bad = min(size, limit + 1)
    while bad - good > 1 and good > 0:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def measure_loader(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of the config's training DataLoader alone, at its workers and image size."""
    cli = build(args, "ours", eval_config=False)
    dm = cli.datamodule
    dm.setup("fit")
    rate = loops.loader_throughput(dm.train_dataloader(), args.loader_batches)
    print(
        f"DataLoader: {rate:.1f} images/s with {dm.workers} workers, {dm.image_size} px, "
        f"batch {dm.batch_size} ({args.loader_batches} batches after the first)"
    )
    return {"loader_images_per_s": rate, "num_workers": dm.workers, "image_size": dm.image_size}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="anomalyvfm-bench-") as workdir:
        args.workdir = workdir
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures and prints (and writes ``--out``)."""
    if args.loader_only:
        return measure_loader(args)
    results = {
        "configs": args.config,
        "overrides": args.set,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "host": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "recipes": [],
    }
    for recipe in args.recipes:
        results["recipes"].append(measure(args, recipe))
        # Free the recipe's model, optimizer state and persistent loader workers before the next.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(format_report(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    from anomalyvfm.errors import run_command

    sys.exit(run_command("python -m anomalyvfm.bench", main))
