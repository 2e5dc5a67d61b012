"""CPU images/s of the deployed inference path: adapters unmerged, merged, none, and ONNX Runtime.

For each backbone (random weights: the same compute as pretrained ones) at the recipe's 48 x 48
token grid (ViT-S/14 at 672 px, ViT-B/16 at 768 px) with the recipe's adapters (DoRA rank 64 on
the q and v slices of ``qkv`` and on ``proj``; decoder with one up-block), one run times:

    (a) eager      PyTorch, adapters unmerged (the model as trained)
    (b) merged     PyTorch, adapters merged into the weights (``merge_adapters``)
    (c) plain      PyTorch, the same backbone without any adapter (``adapter.type: none``)
    (d) ort        ONNX Runtime (CPU provider) on the file ``export_detector`` writes

Every path runs the same graph, :class:`anomalyvfm.deploy.export.DeployedDetector` (resize to
the model size, which is an identity here, model, post-processing, map at the input size,
thresholds), in float32 on one batch of random pixels at the model size. All paths share the
thread count (``torch.set_num_threads`` and ORT ``intra_op_num_threads``, default: every core).
After one warm-up call per path, the repeats take turns across the paths (so that a change in
the machine's load hits all of them alike); the figure is the median over the repeats.
``--profile`` adds one profiled call of (a), (b) and (d) per backbone: where the time goes, by op.

    python experiments/benchmarks/deploy_speed.py --json bench_output/deploy_speed.json --profile
    python experiments/benchmarks/deploy_speed.py --tiny --json /tmp/d.json   # 2-block models
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# name: (timm model, image size at the paper's 48 x 48 token grid)
BACKBONES = {
    "vits14": ("vit_small_patch14_dinov2", 672),
    "vitb16": ("vit_base_patch16_dinov3", 768),
}
# --tiny: 2 blocks of width 32 of the same architectures, a 4 x 4 token grid.
TINY_KWARGS = {"depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_GRID = 4
PATHS = ("eager", "merged", "plain", "ort")


def build(name: str, size: int, adapter: str, rank: int, kwargs: dict[str, Any]) -> Any:
    from anomalyvfm.backbones.adapters import AdapterConfig
    from anomalyvfm.backbones.timm_backbone import BackboneConfig
    from anomalyvfm.models.anomalyvfm import AnomalyVFMModel
    from anomalyvfm.models.decoder import DecoderConfig

    torch.manual_seed(0)
    model = AnomalyVFMModel(
        BackboneConfig(name=name, model_kwargs=dict(kwargs)),
        AdapterConfig(type=adapter, rank=rank, targets=["qkv", "proj"], qkv_parts="qv"),
        DecoderConfig(num_up_blocks=1),
        size,
    )
    return model.eval().requires_grad_(False)


def runners(
    name: str, size: int, rank: int, kwargs: dict[str, Any], threads: int, folder: Path
) -> tuple[dict[str, Callable[[np.ndarray], Any]], dict[str, Any], dict[str, Any]]:
    """One callable per path taking a float32 (B, 3, size, size) array, and facts about them."""
    import onnxruntime as ort

    from anomalyvfm.backbones.adapters import LowRankLinear
    from anomalyvfm.deploy.export import DeployedDetector, export_detector

    model = build(name, size, "dora", rank, kwargs)
    adapted = sum(isinstance(m, LowRankLinear) for m in model.modules())
    merged = DeployedDetector(model)
    eager = DeployedDetector(model)
    # The same wrapper around the model as trained: only the adapters differ from (b).
    model.decoder.channels_last = False  # as DeployedDetector sets on its copy
    eager.model = model
    plain = DeployedDetector(build(name, size, "none", rank, kwargs))
    start = time.perf_counter()
    path = export_detector(model, folder / f"{name}.onnx", "onnx")
    export_s = time.perf_counter() - start
    options = ort_options(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def torch_runner(module: torch.nn.Module) -> Callable[[np.ndarray], Any]:
        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return module(torch.from_numpy(x))

        return run

    calls = {
        "eager": torch_runner(eager),
        "merged": torch_runner(merged),
        "plain": torch_runner(plain),
        "ort": lambda x: session.run(None, {"images": x}),
    }
    facts = {
        "adapted_linears": adapted,
        "onnx_export_s": round(export_s, 1),
        "onnx_mb": round(path.stat().st_size / 2**20, 1),
    }
    return calls, facts, {"eager": eager, "merged": merged, "onnx": path}


def profile(module: torch.nn.Module, x: np.ndarray, top: int) -> dict[str, Any]:
    """One profiled torch call: its wall time, and the self CPU seconds of op groups and top ops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    start = time.perf_counter()
    with torch.inference_mode(), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        module(torch.from_numpy(x))
    wall = time.perf_counter() - start
    ops = {e.key: (e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()}
    groups = {
        "matmul": ("aten::addmm", "aten::mm", "aten::bmm"),
        "attention": (
            "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_attention_math",
            "aten::_softmax",
        ),
        "elementwise add/mul/div": ("aten::add", "aten::mul", "aten::div"),
        "cat/copy": ("aten::cat", "aten::copy_", "aten::clone"),
        "weight norm (DoRA)": ("aten::linalg_vector_norm", "aten::norm"),
        "conv (decoder)": ("aten::mkldnn_convolution",),
    }
    return summary(wall, ops, groups, top)


def profile_ort(path: Path, x: np.ndarray, threads: int, folder: Path, top: int) -> dict[str, Any]:
    """One profiled ONNX Runtime call (after a warm-up one): kernel seconds by ONNX op type."""
    import onnxruntime as ort

    options = ort_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "ort_profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": x})
    start = time.perf_counter()
    session.run(None, {"images": x})
    wall = time.perf_counter() - start
    events = json.loads(Path(session.end_profiling()).read_text())
    last = [e for e in events if e.get("name") == "model_run"][-1]
    ops: dict[str, tuple[float, int]] = {}
    for e in events:
        inside = last["ts"] <= e.get("ts", -1) <= last["ts"] + last["dur"]
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and inside:
            op = str(e.get("args", {}).get("op_name", "?"))
            seconds, count = ops.get(op, (0.0, 0))
            ops[op] = (seconds + e["dur"] / 1e6, count + 1)
    groups = {
        "matmul": ("MatMul", "Gemm", "FusedMatMul"),
        "softmax (attention; its matmuls are MatMul ops)": ("Softmax",),
        "elementwise add/mul/div": ("Add", "Mul", "Div"),
        "conv (decoder)": ("Conv", "FusedConv"),
    }
    return summary(wall, ops, groups, top)


def summary(
    wall: float, ops: dict[str, tuple[float, int]], groups: dict[str, tuple[str, ...]], top: int
) -> dict[str, Any]:
    # Seconds to the microsecond (the profilers' resolution), so a tiny model's are not 0.
    total = sum(s for s, _ in ops.values())
    # Exact op names: a prefix would count aten::addmm as an aten::add.
    grouped = {
        g: round(sum(s for k, (s, _) in ops.items() if k in names), 6)
        for g, names in groups.items()
    }
    ranked = sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "wall_s": round(wall, 6),
        "op_s": round(total, 6),
        "groups_s": grouped,
        "top_ops": {k: {"s": round(s, 6), "calls": n} for k, (s, n) in ranked},
    }


def ort_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's idle threads spin for a while after each run by default, which would take the
    # cores from the torch call timed next; off, each path has the machine to itself.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbones", nargs="+", choices=sorted(BACKBONES), default=["vits14", "vitb16"]
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rank", type=int, default=64, help="DoRA rank (recipe: 64)")
    parser.add_argument("--tiny", action="store_true", help="2-block width-32 models (smoke test)")
    parser.add_argument("--profile", action="store_true", help="profile one call of (a) and (b)")
    parser.add_argument("--json", type=Path, default=Path("bench_output/deploy_speed.json"))
    args = parser.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    header = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "threads": args.threads,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "precision": "float32",
        "tiny": args.tiny,
    }
    print(
        f"{header['machine']}; torch {torch.__version__} / onnxruntime {ort.__version__}, "
        f"{args.threads} threads each; batch {args.batch_size}, float32; "
        f"load average {header['load_before']}"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.backbones:
            name, size = BACKBONES[key]
            kwargs: dict[str, Any] = {}
            if args.tiny:
                kwargs = dict(TINY_KWARGS)
                size = TINY_GRID * (14 if "patch14" in name else 16)
            calls, facts, modules = runners(name, size, args.rank, kwargs, args.threads, Path(tmp))
            x = np.random.default_rng(0).random((args.batch_size, 3, size, size), np.float32)
            for call in calls.values():
                call(x)  # warm-up (oneDNN primitives, ORT arena)
            seconds: dict[str, list[float]] = {p: [] for p in PATHS}
            for _ in range(args.repeats):
                for p in PATHS:
                    start = time.perf_counter()
                    calls[p](x)
                    seconds[p].append(time.perf_counter() - start)
            rates = {p: args.batch_size / statistics.median(seconds[p]) for p in PATHS}
            entry: dict[str, Any] = {
                "timm_model": name,
                "image_size": size,
                **facts,
                "images_per_s": {p: round(r, 4) for p, r in rates.items()},
                "seconds_per_batch": {p: [round(s, 6) for s in seconds[p]] for p in PATHS},
                "ratios": {
                    "ort/eager": round(rates["ort"] / rates["eager"], 3),
                    "ort/merged": round(rates["ort"] / rates["merged"], 3),
                    "merged/eager": round(rates["merged"] / rates["eager"], 3),
                    "merged/plain": round(rates["merged"] / rates["plain"], 3),
                },
            }
            if args.profile:
                entry["profile"] = {
                    "eager": profile(modules["eager"], x, top=8),
                    "merged": profile(modules["merged"], x, top=8),
                    "ort": profile_ort(modules["onnx"], x, args.threads, Path(tmp), top=8),
                }
            results[key] = entry
            print(
                f"{key} ({name}, {size} px): "
                + ", ".join(f"{p} {r:.3g} img/s" for p, r in rates.items())
            )
    header["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print("| backbone | px | (a) eager | (b) merged | (c) plain | (d) ORT | ORT/(a) | (b)/(c) |")
    print("|---|---|---|---|---|---|---|---|")
    for key, entry in results.items():
        r, q = entry["images_per_s"], entry["ratios"]
        print(
            f"| {key} | {entry['image_size']} | {r['eager']:.3g} | {r['merged']:.3g} | "
            f"{r['plain']:.3g} | {r['ort']:.3g} | {q['ort/eager']:.2f} | {q['merged/plain']:.2f} |"
        )
    for key, entry in results.items():
        for p, prof in entry.get("profile", {}).items():
            print(
                f"profile {key} {p}: {prof['wall_s']:.3f} s wall, {prof['op_s']:.3f} s in ops; "
                "by group (s): " + ", ".join(f"{g} {v:.3f}" for g, v in prof["groups_s"].items())
            )
            top = ", ".join(f"{k} {v['s']:.3f} s/{v['calls']}" for k, v in prof["top_ops"].items())
            print(f"    top ops: {top}")
    print(f"load average after: {header['load_after']}; top ops: seconds/calls")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**header, "backbones": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
