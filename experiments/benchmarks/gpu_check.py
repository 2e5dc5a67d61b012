"""The GPU proof in one command: the full-size recipe trains, tests, benchmarks and generates.

On a CUDA machine (from the repository root; ``make gpu-check`` wraps this with the wheel install
that ``make gpu-pack`` prepares)::

    python experiments/benchmarks/gpu_check.py --data .gpu/data --out bench_output/gpu_check

Phases, each in its own process with its own time limit (a failure or time-out is recorded and
the next phase still runs), all at full size with random weights (the same compute as
pretrained ones):

- ``env``: GPU, driver, library versions; the bf16 matrix-product rate and the device-to-device
  copy bandwidth measured here (the ceilings the other figures are read against).
- ``fit``: ``python -m anomalyvfm fit`` (the ``anomalyvfm`` command) on the RADIO paper config
  (ViT-L/16 at 768 px, DoRA r64, bf16, compiled), 30 optimizer steps of 4 x 8 images, normal
  images and textures from ``<data>/dtd``.
- ``test``: ``python -m anomalyvfm test`` of that checkpoint on ``eval/shared_data.yaml`` (MTD,
  MPDD metal_plate, HeadCT from ``<data>``).
- ``bench``: ``python -m anomalyvfm.bench`` on the same config: training and inference images/s
  and TFLOP/s, peak memory, step-time breakdown, data wait with the node's DataLoader workers,
  the cost of a test run against a 200-step run, the largest micro-batch (with and without
  activation checkpointing); the fp32 eager reference recipe in the same run.
- ``aupro``: exact AUPRO of 1,725 maps at 256x256 on CUDA against the CPU path (same value).
- ``inpaint``: SD-1.5-sized diffusion inpainting at 512 px, 20 guided steps: diffusers' defaults
  against bf16, batching and a compiled channels-last UNet.
- ``predict``: ``Detector.predict`` images/s of the fit checkpoint (bf16, batch 32), and its
  ONNX export run with onnxruntime against the same detector in PyTorch (max differences).

Writes ``gpu_check.json`` (every figure, each phase's status and seconds) and ``gpu_check.log``
(each phase's full output) to ``--out`` after every phase, and prints a summary last.
``--dry`` runs every phase on the CPU with tiny models of the same architectures in about a
minute, so the command is tested where no GPU is (``tests/bench/test_gpu_check.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
PAPER_CONFIG = CONFIGS / "anomalyvfm_radio.yaml"
TINY_OVERLAY = REPO / "experiments" / "benchmarks" / "tiny_overlay.yaml"
EVAL_CONFIG = CONFIGS / "eval" / "shared_data.yaml"
# Cheap phases first; fit then bench, so that the bench finds inductor's cache warm; predict
# right after test, as both read the fit checkpoint.
PHASES = ("env", "aupro", "fit", "test", "predict", "bench", "inpaint")
COMPILE_FAILED = "compile_failed.txt"  # in the work folder: later phases then run eagerly
# Seconds each phase may take on the GPU machine (the whole run is also capped by --deadline).
LIMITS = {
    "env": 60,
    "fit": 240,
    "test": 120,
    "predict": 150,
    "bench": 300,
    "aupro": 90,
    "inpaint": 200,
}
FIT_STEPS = 30
# Inpainting settings timed on the GPU: (label, dtype, SDPA, batch, compiled channels-last UNet).
# The first is diffusers' default execution; compiled settings come last (compilation stays).
INPAINT_CHECK = [
    ("diffusers defaults: fp32, SDPA", "float32", True, 1, False),
    ("bf16, SDPA", "bfloat16", True, 1, False),
    ("bf16, SDPA", "bfloat16", True, 8, False),
    ("bf16, SDPA, channels-last, compiled UNet", "bfloat16", True, 8, True),
]


def _load_script(name: str) -> Any:
    """A sibling benchmark script as a module (they are scripts, not a package)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_cli(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Runs ``python -m anomalyvfm ARGS``; output appended to ``log``; (exit code, seconds)."""
    cmd = [sys.executable, "-m", "anomalyvfm", *args]
    start = time.perf_counter()
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        code = subprocess.run(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO
        ).returncode
    return code, time.perf_counter() - start


def _cli_env(opts: argparse.Namespace) -> dict[str, str]:
    data = str(Path(opts.data).resolve())
    return {
        **os.environ,
        "ANOMALYVFM_NORMALS": f"{data}/dtd",
        "ANOMALYVFM_TEXTURES": f"{data}/dtd",
        "ANOMALYVFM_SHARED_DATA": data,
        "ANOMALYVFM_EVAL_DIR": str(opts.work / "eval"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def albumentations_available() -> bool:
    try:
        import albumentations  # noqa: F401
    except ImportError:
        return False
    return True


def _no_variation(opts: argparse.Namespace) -> list[Path]:
    """An overlay turning the generators' albumentations variation off where albumentations is
    missing (none where it is installed). The GPU machine lacks it, and its OpenCV dependency (a
    61 MB wheel) does not fit in the carry; the recipe's generator mix then runs without its
    variation (the same generators and masks; the GPU compute is unchanged)."""
    if albumentations_available():
        return []
    import yaml

    # The recipe's own generator list (base.yaml), each with ``augment: null``.
    base = yaml.safe_load((CONFIGS / "base.yaml").read_text())
    generators = base["data"]["init_args"]["generators"]
    for gen in generators:
        gen.setdefault("init_args", {})["augment"] = None
    path = opts.work / "no_variation.yaml"
    path.write_text(yaml.safe_dump({"data": {"init_args": {"generators": generators}}}))
    return [path]


def _model_configs(opts: argparse.Namespace) -> list[str]:
    """The paper config (shrunk by the tiny overlay in dry mode) and the check's own overlay:
    random weights, CSV logging only, run files under the work folder."""
    overlay = opts.work / "check_overlay.yaml"
    text = (
        "trainer:\n"
        f"  default_root_dir: {opts.work / 'fit'}\n"
        "  logger:\n"
        "    - class_path: lightning.pytorch.loggers.CSVLogger\n"
        f"      init_args: {{save_dir: {opts.work / 'fit'}}}\n"
        "model:\n  init_args:\n    backbone:\n      pretrained: false\n"
    )
    overlay.write_text(text)
    configs = [PAPER_CONFIG] + ([TINY_OVERLAY] if opts.dry else []) + _no_variation(opts)
    configs.append(overlay)
    return [f"--config={c}" for c in configs]


# ---------------------------------------------------------------------------------------------
# Phases. Each returns a dict of figures; an exception marks the phase failed.


def phase_env(opts: argparse.Namespace) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    names = ("timm", "lightning", "peft", "jsonargparse", "diffusers", "onnxruntime")
    for name in (*names, "albumentations", "onnxscript"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    if out["albumentations"] is None:
        out["generator_variation"] = "off: albumentations is not installed (see the fit overlay)"
    if not torch.cuda.is_available():
        return out
    props = torch.cuda.get_device_properties(0)
    out.update(
        gpu=torch.cuda.get_device_name(),
        gpu_memory_gib=props.total_memory / 2**30,
        multiprocessors=props.multi_processor_count,
        cuda_version=torch.version.cuda,
    )
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    out["nvidia_smi"] = smi.stdout.strip()
    # Ceilings: a large bf16 matrix product on random data, and a device-to-device copy.
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out["bf16_matmul_tflops"] = n**3 * 2 / _cuda_seconds(lambda: a @ b, 10) / 1e12
    src = torch.randn(2**30 // 4, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    seconds = _cuda_seconds(lambda: dst.copy_(src), 10)
    out["copy_tb_per_s"] = 2 * src.numel() * 4 / seconds / 1e12
    return out


def _cuda_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn`` on the GPU (CUDA events), after three warm-up calls."""
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def phase_fit(opts: argparse.Namespace) -> dict[str, Any]:
    """Trains through the CLI. If the compiled run fails, the failure is recorded (and kept in
    the work folder for the bench) and the run is repeated eagerly, so that the rest of the path
    is still checked."""
    args = ["fit", *_model_configs(opts), f"--trainer.max_steps={opts.fit_steps}"]
    out: dict[str, Any] = {}
    code, seconds = _run_cli(args, _cli_env(opts), opts.log)
    if code != 0:
        reason = f"compiled fit exited {code}: {_last_error(opts.log)}"
        (opts.work / COMPILE_FAILED).write_text(reason)
        out["compiled_fit_failure"] = reason
        args.append("--model.init_args.compile=never")
        code, seconds = _run_cli(args, _cli_env(opts), opts.log)
    if code != 0:
        raise RuntimeError(f"anomalyvfm fit exited {code}: {_last_error(opts.log)}")
    ckpt = _fit_checkpoint(opts)
    losses = _csv_column(sorted((opts.work / "fit").rglob("metrics.csv")), "train/loss")
    return {
        **out,
        "command": "python -m anomalyvfm " + " ".join(args),
        "exit_code": code,
        "seconds": seconds,
        "optimizer_steps": opts.fit_steps,
        "checkpoint": str(ckpt),
        "checkpoint_mb": ckpt.stat().st_size / 2**20,
        "train_loss_first_last": [losses[0], losses[-1]] if losses else None,
    }


def _fit_checkpoint(opts: argparse.Namespace) -> Path:
    """The last.ckpt the fit phase wrote."""
    ckpts = sorted((opts.work / "fit").rglob("last.ckpt"))
    if not ckpts:
        raise RuntimeError(f"the fit phase wrote no last.ckpt under {opts.work / 'fit'}")
    return ckpts[-1]


def _last_error(log: Path) -> str:
    """The last line of ``log`` that names an error (or its last line)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
    return (errors or lines or ["(no output)"])[-1][:400]


def _csv_column(files: list[Path], column: str) -> list[float]:
    import csv

    values: list[float] = []
    for path in files:
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if row.get(column):
                    values.append(float(row[column]))
    return values


def phase_test(opts: argparse.Namespace) -> dict[str, Any]:
    ckpt = _fit_checkpoint(opts)
    args = ["test", *_model_configs(opts), f"--config={EVAL_CONFIG}", f"--ckpt_path={ckpt}"]
    if opts.dry:
        args.append("--trainer.limit_test_batches=2")
    code, seconds = _run_cli(args, _cli_env(opts), opts.log)
    if code != 0:
        raise RuntimeError(f"anomalyvfm test exited {code} (see the log)")
    results_path = opts.work / "eval" / "results.json"
    results = json.loads(results_path.read_text())
    return {
        "command": "python -m anomalyvfm " + " ".join(args),
        "exit_code": code,
        "seconds": seconds,
        "results_json": results,
    }


def phase_bench(opts: argparse.Namespace) -> dict[str, Any]:
    from anomalyvfm.bench.__main__ import main as bench_main

    os.environ.update(_cli_env(opts))
    configs = [str(PAPER_CONFIG)] + ([str(TINY_OVERLAY)] if opts.dry else [])
    configs += [str(c) for c in _no_variation(opts)]
    argv = [a for c in configs for a in ("--config", c)]
    argv += ["--normal-dir", f"{Path(opts.data).resolve()}/dtd", "--eval-config", str(EVAL_CONFIG)]
    argv += ["--eval-recipes", "ours", "--out", str(opts.work / "bench.json")]
    if (opts.work / COMPILE_FAILED).exists():
        argv += ["--set", "model.init_args.compile=never"]
    if opts.dry:
        argv += ["--steps", "2", "--warmup", "1", "--infer-steps", "1", "--loader-batches", "2"]
        argv += ["--eval-batches", "1"]
    else:
        argv += ["--infer-batch", "32", "--max-batch"]
    start = time.perf_counter()
    results = bench_main(argv)
    return {
        "command": "python -m anomalyvfm.bench " + " ".join(argv),
        "seconds": time.perf_counter() - start,
        **results,
    }


def phase_aupro(opts: argparse.Namespace) -> dict[str, Any]:
    aupro = _load_script("aupro")
    num, size = (40, 64) if opts.dry else (1725, 256)
    maps, masks = aupro.make_inputs(num, size, size, "random", 0)
    cases = argparse.Namespace(anomalib_python=None)
    out: dict[str, Any] = {"maps": num, "size": size}
    for device in ["cpu"] + (["cuda"] if _cuda() else []):
        res = aupro.benchmark(maps, masks, ["ours"], cases, device)["ours"]
        if isinstance(res, str):
            raise RuntimeError(f"AUPRO on {device}: {res}")
        out[device] = res
    if "cuda" in out:
        out["abs_difference"] = abs(out["cuda"]["value"] - out["cpu"]["value"])
    return out


def phase_inpaint(opts: argparse.Namespace) -> dict[str, Any]:
    import torch

    gens = _load_script("generators")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    device = "cuda" if _cuda() else "cpu"
    tiny = opts.dry or device != "cuda"
    size, steps, calls = (64, 2, 1) if tiny else (512, 20, 2)
    start = time.perf_counter()
    pipe = gens.build_inpaint_pipeline(tiny=tiny)
    out: dict[str, Any] = {
        "model": "toy-width SD-1.5 layout" if tiny else "SD-1.5 size (UNet 860M, VAE 84M)",
        "size": size,
        "guided_steps": steps,
        "device": device,
        "build_seconds": time.perf_counter() - start,
        "settings": [],
    }
    for label, dtype, sdpa, batch, compiled in INPAINT_CHECK:
        row: dict[str, Any] = {"setting": label, "batch": batch}
        if compiled and device != "cuda":
            row["images_per_s"] = None
            row["note"] = "compilation is timed on CUDA only"
        else:
            t0 = time.perf_counter()
            row["images_per_s"] = gens.inpaint_rate(
                pipe, size, batch, steps, dtype, sdpa, calls, device, compile_unet=compiled
            )
            row["seconds_with_warmup"] = time.perf_counter() - t0
            if device == "cuda":
                row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
        out["settings"].append(row)
    return out


def phase_predict(opts: argparse.Namespace) -> dict[str, Any]:
    """Deployment: ``Detector.predict`` of the fit checkpoint (bf16 at batch 32 on CUDA), then
    the exported ONNX file (onnxruntime) against the same detector in PyTorch (fp32)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from anomalyvfm import Detector
    from anomalyvfm.deploy.export import DeployedDetector

    speed = _load_script("predict_speed")
    ckpt = _fit_checkpoint(opts)
    device = "cuda" if _cuda() else "cpu"
    precision = "bf16" if device == "cuda" else "32"
    count, batch = (8, 4) if opts.dry else (320, 32)
    detector = Detector.from_checkpoint(ckpt, "cpu")
    size = detector.image_size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    out: dict[str, Any] = {"device": device, "precision": precision, "batch": batch}
    out["predict_images_per_s"] = speed.measure(ckpt, device, precision, images, batch)
    out["predict_input"] = f"{count} uint8 images of {size}x{size} (in memory)"
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        deployed = DeployedDetector(detector.model).to(device)
        ref_score, _, ref_map, _ = (t.float().cpu().numpy() for t in deployed(x.to(device)))
    out["reference"] = f"DeployedDetector in PyTorch, fp32 on {device}"
    # .pt2 needs only torch, so it runs on the GPU machine as carried; ONNX needs the onnx and
    # onnxscript exporter packages, which that machine lacks (over the carry limit as wheels).
    formats = ["pt2"] + (["onnx"] if importlib.util.find_spec("onnxscript") else [])
    if "onnx" not in formats:
        out["onnx"] = "skipped: onnx/onnxscript not installed here (the exporter needs them)"
    for fmt in formats:
        path = opts.work / f"detector.{fmt}"
        start = time.perf_counter()
        detector.export(path)
        rec: dict[str, Any] = {"export_seconds": time.perf_counter() - start}
        rec["mb"] = path.stat().st_size / 2**20
        start = time.perf_counter()
        if fmt == "pt2":
            program = torch.export.load(str(path))
            if device == "cuda":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, "cuda")
            with torch.no_grad():
                res = program.module()(x.to(device))
            score, amap = (t.float().cpu().numpy() for t in (res[0], res[2]))
            rec["device"] = device
        else:
            available = ort.get_available_providers()
            wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
            session = ort.InferenceSession(
                str(path), providers=[p for p in wanted if p in available]
            )
            score, _, amap, _ = session.run(None, {"images": x.numpy()})
            rec["providers"] = session.get_providers()
        rec["run_seconds"] = time.perf_counter() - start
        rec["score_max_abs_diff"] = float(np.abs(score - ref_score).max())
        rec["map_max_abs_diff"] = float(np.abs(amap - ref_map).max())
        out[fmt] = rec
    return out


PHASE_FUNCS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "env": phase_env,
    "fit": phase_fit,
    "test": phase_test,
    "bench": phase_bench,
    "aupro": phase_aupro,
    "inpaint": phase_inpaint,
    "predict": phase_predict,
}

# ---------------------------------------------------------------------------------------------
# Orchestration: one process per phase, results merged into one JSON after each.

RESULT_MARK = "@@gpu_check_result@@ "


def run_phase_here(opts: argparse.Namespace) -> None:
    """Worker: runs one phase in this process and prints its figures as the last line."""
    figures = PHASE_FUNCS[opts.phase](opts)
    print(RESULT_MARK + json.dumps(figures, default=str), flush=True)


def run_phase(opts: argparse.Namespace, name: str, limit: float) -> dict[str, Any]:
    """Runs one phase in a fresh process (its own process group, so that a time-out also ends
    the CLI and DataLoader processes it started); returns its record."""
    cmd = [sys.executable, __file__, "--phase", name, "--data", str(opts.data)]
    cmd += ["--work", str(opts.work), "--log", str(opts.log), "--fit-steps", str(opts.fit_steps)]
    cmd += ["--dry"] if opts.dry else []
    start = time.perf_counter()
    with opts.log.open("a") as fh:
        fh.write(f"\n===== phase {name} (limit {limit:.0f} s) =====\n")
    record: dict[str, Any] = {}
    capture = opts.work / f"phase_{name}.out"
    with capture.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
            record["status"] = f"timed out after {limit:.0f} s"
    output = capture.read_text(errors="replace")
    with opts.log.open("a") as fh:
        fh.write(output)
    lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_MARK)]
    if code == 0 and lines:
        record.update(status="ok", **json.loads(lines[-1][len(RESULT_MARK) :]))
    elif code is not None:
        tail = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        record["status"] = f"failed (exit {code}): {tail[0][:300]}"
    record["phase_seconds"] = time.perf_counter() - start
    return record


def summary(results: dict[str, Any]) -> str:
    """The figures that answer the targets, one line each."""
    p = results["phases"]
    lines = [f"GPU check ({'dry, CPU' if results['dry'] else 'full size'}), {results['date']}"]
    for name, rec in p.items():
        lines.append(f"  {name:8s} {rec.get('status', '?')}  ({rec.get('phase_seconds', 0):.0f} s)")
    fit = p.get("fit", {})
    if fit.get("compiled_fit_failure"):
        lines.append(f"  fit: compiled run failed, eager fallback: {fit['compiled_fit_failure']}")
    env = p.get("env", {})
    if env.get("gpu"):
        lines.append(
            f"  device: {env['gpu']}, torch {env['torch']}, bf16 matmul "
            f"{env['bf16_matmul_tflops']:.0f} TFLOP/s, copy {env['copy_tb_per_s']:.2f} TB/s"
        )
    bench = p.get("bench", {})
    for r in bench.get("recipes", []):
        lines.append(
            f"  bench {r['recipe']}: train {r['train_images_per_s']:.1f} img/s "
            f"{r['train_tflops']:.0f} TFLOP/s, infer {r['infer_images_per_s']:.1f} img/s "
            f"{r['infer_tflops']:.0f} TFLOP/s, data wait {r['fed_data_wait_fraction']:.1%}, "
            f"peak {r['train_peak_gib'] or 0:.1f} GiB"
            + (
                f", eval/200 steps {r['eval_1725_vs_200_steps']:.1%}"
                if "eval_1725_vs_200_steps" in r
                else ""
            )
            + (f", max micro-batch {r['max_micro_batch']}" if "max_micro_batch" in r else "")
            + (
                f" ({r['max_micro_batch_grad_checkpointing']} checkpointed)"
                if "max_micro_batch_grad_checkpointing" in r
                else ""
            )
        )
    aupro = p.get("aupro", {})
    if "cpu" in aupro:
        cuda = aupro.get("cuda", {})
        lines.append(
            f"  AUPRO {aupro['maps']} maps: cpu {aupro['cpu']['seconds']:.2f} s"
            + (
                f", cuda {cuda['seconds']:.2f} s, |diff| {aupro['abs_difference']:.1e}"
                if cuda
                else ""
            )
        )
    pred = p.get("predict", {})
    if "predict_images_per_s" in pred:
        lines.append(
            f"  predict {pred['precision']} batch {pred['batch']}: "
            f"{pred['predict_images_per_s']:.1f} img/s"
            + "".join(
                f", {fmt} |diff| score {pred[fmt]['score_max_abs_diff']:.1e} "
                f"map {pred[fmt]['map_max_abs_diff']:.1e}"
                for fmt in ("pt2", "onnx")
                if isinstance(pred.get(fmt), dict)
            )
        )
    for row in p.get("inpaint", {}).get("settings", []):
        rate = row.get("images_per_s")
        lines.append(
            f"  inpaint {row['setting']}, batch {row['batch']}: "
            + (f"{rate:.2f} img/s" if rate is not None else row.get("note", "n/a"))
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder with mtd/, mpdd/, headct/, dtd/ (default ../shared/data)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench_output" / "gpu_check")
    p.add_argument("--dry", action="store_true", help="CPU, tiny models: checks the command")
    p.add_argument("--only", nargs="+", choices=PHASES, help="run these phases only")
    p.add_argument("--deadline", type=float, default=470.0, help="seconds for the whole run")
    p.add_argument("--fit-steps", type=int, default=FIT_STEPS, help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument(
        "--work", type=Path, help="scratch folder for run files (default OUT/work; emptied)"
    )
    p.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.dry and opts.fit_steps == FIT_STEPS:
        opts.fit_steps = 2
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.phase:
        run_phase_here(opts)
        return 0
    for sub in ("mtd", "mpdd", "headct", "dtd"):
        if not (opts.data / sub).is_dir():
            print(f"gpu_check: --data {opts.data} has no {sub}/ folder (copy ../shared/data there)")
            return 2
    opts.out.mkdir(parents=True, exist_ok=True)
    opts.work = (opts.work or opts.out / "work").resolve()
    if not opts.only:
        shutil.rmtree(opts.work, ignore_errors=True)
    opts.work.mkdir(parents=True, exist_ok=True)
    opts.log = (opts.out / "gpu_check.log").resolve()
    opts.log.write_text("")
    json_path = opts.out / "gpu_check.json"
    results: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "dry": opts.dry,
        "phases": {},
    }
    if opts.only and json_path.exists():  # a rerun of some phases keeps the others' figures
        results["phases"] = json.loads(json_path.read_text()).get("phases", {})
    start = time.perf_counter()
    for name in opts.only or PHASES:
        left = opts.deadline - (time.perf_counter() - start)
        if left < 5:
            results["phases"][name] = {"status": "not run: --deadline reached"}
            continue
        limit = min(LIMITS.get(name, 60) * (4 if opts.dry else 1), left)
        record = run_phase(opts, name, limit)
        results["phases"][name] = record
        print(f"[{time.perf_counter() - start:6.0f} s] {name}: {record['status']}", flush=True)
        json_path.write_text(json.dumps(results, indent=2, default=str))
    results["seconds"] = time.perf_counter() - start
    json_path.write_text(json.dumps(results, indent=2, default=str))
    print(summary(results))
    failed = [n for n, r in results["phases"].items() if r.get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
