"""The benchmark's printed report: markdown tables, one row per recipe."""

from __future__ import annotations

from typing import Any

from anomalyvfm.bench.loops import PHASES

COLUMNS = [
    ("train_images_per_s", "train img/s", "{:.2f}"),
    ("train_tflops", "train TFLOP/s", "{:.3g}"),
    ("fed_images_per_s", "train+data img/s", "{:.2f}"),
    ("fed_data_wait_fraction", "data wait", "{:.1%}"),
    ("loader_images_per_s", "loader img/s", "{:.1f}"),
    ("infer_images_per_s", "infer img/s", "{:.2f}"),
    ("infer_tflops", "infer TFLOP/s", "{:.3g}"),
    ("train_peak_gib", "train peak GiB", "{:.1f}"),
    ("infer_peak_gib", "infer peak GiB", "{:.1f}"),
    ("train_syncs_per_step", "syncs/step", "{:.2f}"),
]


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    return fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def format_report(results: dict[str, Any]) -> str:
    """Markdown: throughput and memory, step breakdown, evaluation cost, speed-ups."""
    recipes = results["recipes"]
    lines = [
        f"device: {results['device']} | host: {results['host']} | torch {results['torch']}",
        f"configs: {' '.join(results['configs'])} {' '.join(results['overrides'])}".rstrip(),
        "",
    ]
    for r in recipes:
        lines.append(
            f"{r['recipe']}: precision {r['precision']}, compiled {r['compiled']}, micro-batch "
            f"{r['micro_batch']} x {r['accumulate']} accumulation, inference batch "
            f"{r['infer_batch']}; {r['train_tflop_per_image']:.4g} TFLOP per training image, "
            f"{r['infer_tflop_per_image']:.4g} per inference image"
        )
    lines.append("")
    rows = [[r["recipe"]] + [_cell(r.get(k), f) for k, _, f in COLUMNS] for r in recipes]
    lines += _table(["recipe"] + [name for _, name, _ in COLUMNS], rows)
    lines += ["", "step time per micro-batch, ms (device synchronised between phases):", ""]
    rows = []
    for r in recipes:
        ms = r["breakdown_ms"]
        rows.append(
            [r["recipe"]] + [f"{ms.get(p, 0.0):.1f}" for p in PHASES] + [f"{sum(ms.values()):.1f}"]
        )
    lines += _table(["recipe", *PHASES, "total"], rows)
    if any("eval_seconds" in r for r in recipes):
        lines += ["", "evaluation (a real trainer.test: data, model, metrics):", ""]
        rows = [
            [
                r["recipe"],
                str(r["eval_images"]),
                f"{r['eval_seconds']:.1f}",
                f"{r['eval_images_per_s']:.1f}",
                f"{r['eval_1725_vs_200_steps']:.1%}",
            ]
            for r in recipes
            if "eval_seconds" in r
        ]
        lines += _table(
            ["recipe", "images", "seconds", "img/s", "1,725 images / 200-step train"], rows
        )
    if any("max_micro_batch" in r for r in recipes):
        lines.append("")
        lines += [
            f"largest micro-batch ({r['recipe']}, eager): {r['max_micro_batch']}, with "
            f"activation checkpointing {r.get('max_micro_batch_grad_checkpointing', 'n/a')}"
            for r in recipes
            if "max_micro_batch" in r
        ]
    by_name = {r["recipe"]: r for r in recipes}
    if {"reference", "ours"} <= set(by_name):
        ref, ours = by_name["reference"], by_name["ours"]
        lines += [
            "",
            "ours / reference: "
            + ", ".join(
                f"{name} {ours[k] / ref[k]:.2f}x"
                for k, name in (
                    ("train_images_per_s", "train"),
                    ("fed_images_per_s", "train+data"),
                    ("infer_images_per_s", "inference"),
                )
            ),
        ]
    return "\n".join(lines)
