"""Offline, resumable, sharded generation of a synthetic anomaly dataset (docs/method.md, 1.1).

Command::

    python -m data_synthesis generate --config cfg.yaml --out DIR \\
        [--stages normals,anomalies,filter] [--num N] [--seed S] \\
        [--devices K] [--accelerator cpu|gpu|auto] [--num-nodes M] [--batch-size B]

Config: a plain YAML mapping (``--num``/``--seed``/``--batch-size`` override its values)::

    seed: 0               # item i of stage s uses np.random.default_rng([seed, s, i])
    num: 10000            # items (candidates) to generate
    batch_size: 4         # items per predict_step (per process)
    num_workers: 2        # data-loader processes reading the inputs of each stage
    normals:              # exactly one of source_dir and generator
      source_dir: data/normals   # item i copies the (i mod F)-th sorted file ...
      image_size: 768            # ... resized (int or [h, w]; null keeps the size)
      on_bad_source: error       # or skip: counted and named in summary.json
      generator: {class_path: NormalImageGenerator, init_args: {...}}  # text-to-image
    anomalies:
      generator: {class_path: CutPasteGenerator, init_args: {mask_type: box}}
    filter: {class_path: FeatureDistanceFilter, init_args: {threshold: 0.25}}  # null: keep masks
    train_ok: kept        # train/ok: normals of kept pairs only (the reference), or all

``class_path`` is a short name exported by ``data_synthesis`` (or its ``normals``, ``inpaint``
and ``filter`` modules) or a dotted import path; ``init_args`` are the constructor's arguments.
Models given ``device: auto`` are placed on the process's own device (so each rank uses its GPU).

Output (the reference layout): ``train/bad/NNNNNN.png`` anomalous images whose mask is not
empty, ``ground_truth/bad/NNNNNN.png`` their masks, ``train/ok/NNNNNN.png`` the normals of those
pairs (``train_ok: all``: every normal), ``candidates/normals/`` every normal and
``candidates/{images,masks}/`` the unfiltered anomalies, ``manifest.jsonl`` (one line per item,
sorted, with each stage's seed, params, files and SHA-256) and ``summary.json`` (counts).

Resuming: files are written atomically and each item's manifest record is appended only after its
files are in place (:mod:`data_synthesis.manifest`). Rerunning the same command after a crash skips
items whose record exists and whose files hash correctly and redoes everything else, so the result
equals an uninterrupted run byte for byte. ``manifest/run.json`` records each stage's config; a
rerun with a different seed or stage config fails naming the options that differ (``num``,
``batch_size``, ``num_workers`` and the devices may change: ``num`` can grow a finished dataset).

Scale out: each stage runs through Lightning's prediction loop: a ``Dataset`` of the pending item
indices, a ``LightningModule`` whose ``predict_step`` processes a batch, and a
``BasePredictionWriter`` that writes files and manifest lines. With ``devices * num_nodes > 1`` the
Trainer uses DDP and its distributed sampler shards the indices; rank 0 plans each stage (which
items are pending) and broadcasts the plan, and merges at the end. Writes are idempotent, so an
item done twice (e.g. two runs on one folder) is harmless. Launch on one machine with
``--devices K`` (Lightning starts the other processes itself), or with an external launcher that
sets the ranks, the shared ``--out`` on a shared file system::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m data_synthesis \\
        generate --config cfg.yaml --out /shared/ds --devices 8 --num-nodes 2 --accelerator gpu
    # SLURM: #SBATCH --nodes=2 --ntasks-per-node=8 --gpus-per-node=8, then
    srun python -m data_synthesis generate ... --devices 8 --num-nodes 2 --accelerator gpu

Outputs depend only on (config, seed, index) as long as each generator is per-item deterministic
for any batch composition (true for the classic generators on CPU; GPU diffusion kernels may
differ in the last bits between batch sizes, so keep ``batch_size`` fixed across resumes there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from data_synthesis.manifest import (
    atomic_write,
    check_num,
    check_run_config,
    config_hash,
    remove_temporaries,
    valid_records,
)
from data_synthesis.stages import (
    STAGES,
    TRAIN_OK,
    AnomaliesStage,
    FilterStage,
    NormalsStage,
    Stage,
)

_KEYS = {"seed", "num", "batch_size", "num_workers", "normals", "anomalies", "filter", "train_ok"}


def load_config(path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Read and check a pipeline config; non-None ``overrides`` replace top-level keys.

    Raises:
        ValueError: Unknown keys, missing ``num``, or sections of the wrong type (named).
    """
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config must be a YAML mapping")
    config.update({k: v for k, v in overrides.items() if v is not None})
    return check_config(config, str(path))


def check_config(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Validate a config dict and fill defaults (seed 0, batch_size 1, num_workers 0, train_ok
    kept)."""
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(_KEYS)}")
    cfg: dict[str, Any] = {"seed": 0, "batch_size": 1, "num_workers": 0}
    cfg.update({"normals": {}, "anomalies": {}, "filter": None, "train_ok": "kept"})
    cfg.update(config)
    for key, low in (("num", 1), ("seed", 0), ("batch_size", 1), ("num_workers", 0)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{where}: option {key!r} must be an integer >= {low}, got {value!r}")
    for key in ("normals", "anomalies"):
        if not isinstance(cfg[key], dict):
            raise ValueError(f"{where}: option {key!r} must be a mapping")
    if cfg["train_ok"] not in TRAIN_OK:
        raise ValueError(
            f"{where}: option 'train_ok' must be one of {list(TRAIN_OK)}, got {cfg['train_ok']!r}"
        )
    return cfg


def stage_configs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What determines each stage's outputs: the seed and the configs of it and its upstream."""
    out: dict[str, Any] = {}
    chain: dict[str, Any] = {"seed": cfg["seed"]}
    for name in STAGES:
        chain = {**chain, name: cfg[name]}
        # train_ok decides the filter stage's files only: earlier stages keep their config.
        out[name] = {**chain, "train_ok": cfg["train_ok"]} if name == "filter" else chain
    return out


def build_stage(name: str, cfg: dict[str, Any], out: Path) -> Stage:
    """Instantiate stage ``name`` from the config; a wrong option is named in the error."""
    try:
        if name == "normals":
            return NormalsStage(out, cfg["seed"], **cfg["normals"])
        if name == "anomalies":
            return AnomaliesStage(out, cfg["seed"], **cfg["anomalies"])
        return FilterStage(out, cfg["seed"], cfg["filter"], cfg["train_ok"])
    except TypeError as exc:
        raise ValueError(f"config section {name!r}: {exc}") from exc


def generate(
    config: dict[str, Any],
    out: str | Path,
    stages: Sequence[str] = STAGES,
    devices: int = 1,
    accelerator: str = "cpu",
    num_nodes: int = 1,
    progress: bool = False,
) -> dict[str, Any] | None:
    """Run (or resume) the requested stages, then merge the manifest on rank 0.

    Args:
        config: A config as returned by :func:`load_config` (checked again here).
        out: Output folder (created).
        stages: Subset of ``normals``, ``anomalies``, ``filter``; always run in that order.
        devices: Processes (devices) per node.
        accelerator: Lightning accelerator: "cpu", "gpu" or "auto".
        num_nodes: Machines; with ``devices * num_nodes > 1`` the stages run under DDP.
        progress: Show Lightning's progress bar.

    Returns:
        The summary on global rank 0, None on other ranks.

    Raises:
        ValueError: Unknown stage, bad config, config differing from the one ``out`` was
            started with, or a stage whose upstream output is missing.
    """
    from lightning.pytorch import Trainer

    from data_synthesis.sharding import ManifestWriter, StageData, StageModule

    cfg = check_config(dict(config))
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_num(out, cfg["num"])
    check_run_config(out, stage_configs(cfg), stages)
    writer = ManifestWriter(out, cfg["seed"])
    trainer = Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp" if devices * num_nodes > 1 else "auto",
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        default_root_dir=str(out),
    )
    for name in (s for s in STAGES if s in stages):
        stage = build_stage(name, cfg, out)
        writer.start(name)
        data = StageData(stage, cfg["num"], cfg["batch_size"], cfg["num_workers"])
        trainer.predict(StageModule(stage), datamodule=data, return_predictions=False)
        trainer.strategy.barrier()  # the next stage's plan must see every rank's records
    if not trainer.is_global_zero:
        return None
    return merge(out, cfg)


def merge(out: str | Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Write the sorted ``manifest.jsonl`` and ``summary.json`` from the valid stage records.

    Duplicate records of one item (written by two processes) are identical, so the first valid
    one is kept. Temporary files left by killed writers are removed.
    """
    out = Path(out)
    remove_temporaries(out)
    num = cfg["num"]
    records = {name: valid_records(out, name, range(num)) for name in STAGES}
    lines = []
    for index in range(num):
        entry: dict[str, Any] = {"index": index}
        for name in STAGES:
            if index in records[name]:
                entry[name] = {k: v for k, v in records[name][index].items() if k != "index"}
        lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    atomic_write(out / "manifest.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    summary = _summary(records, cfg)
    atomic_write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary


def _summary(records: dict[str, dict[int, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    def count(stage: str, status: str) -> int:
        return sum(r["status"] == status for r in records[stage].values())

    bad = [
        {"index": i, "source": r["params"]["source"], "error": r["params"]["error"]}
        for i, r in sorted(records["normals"].items())
        if r["params"].get("reason") == "bad_source"
    ]
    return {
        "num": cfg["num"],
        "seed": cfg["seed"],
        "config_hash": config_hash(stage_configs(cfg)["filter"]),
        "generated": count("normals", "ok"),
        "skipped_bad_source": len(bad),
        "bad_sources": bad,
        "candidates": count("anomalies", "ok"),
        "kept": count("filter", "ok"),
        "dropped_empty_mask": count("filter", "dropped"),
        "pending": {name: cfg["num"] - len(records[name]) for name in STAGES},
    }
