"""The offline generation pipeline: layout, manifest, determinism, resume, sharding, bad input.

Real code paths only: classic generators, a tiny randomly initialised timm ViT as the filter,
Lightning's prediction loop, and real subprocesses for the crash and the 2-process DDP run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from data_synthesis.__main__ import main
from data_synthesis.pipeline import generate
from data_synthesis.sharding import CRASH_ENV
from tests.conftest import REPO

NUM = 12
TINY_FILTER = {
    "class_path": "FeatureDistanceFilter",
    "init_args": {
        "backbone": "vit_small_patch16_224",
        "pretrained": False,
        "model_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
        "image_size": 64,
        # A random ViT's distances spread over ~0.05-0.8: 0.1 keeps most pairs, drops some.
        "threshold": 0.1,
        "device": "auto",
    },
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five normal images of mixed sizes and modes (RGB, grayscale, RGBA, 16-bit)."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    for i, (size, mode) in enumerate(
        [(64, "RGB"), (80, "RGB"), (64, "L"), (48, "RGBA"), (64, "I;16")]
    ):
        pixels = rng.uniform(0.2, 0.8, (size, size, 4))
        if mode == "I;16":
            img = Image.fromarray((pixels[..., 0] * 65535).astype(np.uint16))
        else:
            img = Image.fromarray((pixels * 255).astype(np.uint8), "RGBA").convert(mode)
        img.save(root / f"n{i}.png")
    return root


def make_config(sources: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "seed": 7,
        "num": NUM,
        "batch_size": 5,  # does not divide NUM: uneven last batch and uneven DDP shards
        "normals": {"source_dir": str(sources), "image_size": 64},
        "anomalies": {
            "generator": {"class_path": "CutPasteGenerator", "init_args": {"mask_type": "box"}}
        },
        "filter": TINY_FILTER,
    }
    config.update(overrides)
    return config


def tree(root: Path) -> dict[str, bytes]:
    """Every dataset file's bytes, except the per-process manifest shards (random names)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith("manifest/")
    }


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "data_synthesis", "generate", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def reference(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted single-process run of all three stages."""
    out = tmp_path_factory.mktemp("reference")
    generate(make_config(sources), out)
    return out


def test_layout_manifest_and_hashes(reference: Path) -> None:
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["generated"] == summary["candidates"] == NUM
    assert summary["kept"] + summary["dropped_empty_mask"] == NUM
    assert summary["kept"] >= 6 and summary["dropped_empty_mask"] >= 1
    assert summary["pending"] == {"normals": 0, "anomalies": 0, "filter": 0}
    normals = sorted(p.name for p in (reference / "candidates/normals").iterdir())
    assert normals == [f"{i:06d}.png" for i in range(NUM)]
    bad = sorted(p.name for p in (reference / "train/bad").iterdir())
    assert bad == sorted(p.name for p in (reference / "ground_truth/bad").iterdir())
    assert len(bad) == summary["kept"]
    # train_ok: kept (the default, as the reference): train/ok holds the kept pairs' normals, 1:1.
    assert sorted(p.name for p in (reference / "train/ok").iterdir()) == bad
    for name in bad:
        copy = reference / "train/ok" / name
        assert copy.read_bytes() == (reference / "candidates/normals" / name).read_bytes()

    lines = [json.loads(s) for s in (reference / "manifest.jsonl").read_text().splitlines()]
    assert [e["index"] for e in lines] == list(range(NUM))
    for entry in lines:
        i = entry["index"]
        assert entry["normals"]["seed"] == [7, 0, i] and entry["filter"]["seed"] == [7, 2, i]
        assert entry["normals"]["params"]["source"] == f"n{i % 5}.png"
        for stage in ("normals", "anomalies", "filter"):
            for f in entry[stage]["files"].values():
                digest = hashlib.sha256((reference / f["path"]).read_bytes()).hexdigest()
                assert digest == f["sha256"]
        kept = entry["filter"]["status"] == "ok"
        assert kept == (f"{i:06d}.png" in bad)
        if kept:  # the filtered mask is binary, non-empty and inside the generator's box
            mask = np.asarray(Image.open(reference / f"ground_truth/bad/{i:06d}.png"))
            box = np.asarray(Image.open(reference / f"candidates/masks/{i:06d}.png"))
            assert set(np.unique(mask)) <= {0, 255} and mask.any()
            assert not (mask & ~box).any()
            assert entry["filter"]["params"]["mask_pixels"] == int((mask > 0).sum())
        else:
            assert entry["filter"]["status"] == "dropped"
            assert entry["filter"]["params"]["mask_pixels"] == 0
    # The normal stays the normal: the candidate equals it outside the box.
    normal = np.asarray(Image.open(reference / "candidates/normals/000000.png"))
    cand = np.asarray(Image.open(reference / "candidates/images/000000.png"))
    box = np.asarray(Image.open(reference / "candidates/masks/000000.png")) > 0
    assert (normal[~box] == cand[~box]).all() and (normal[box] != cand[box]).any()


def test_same_seed_same_bytes_other_seed_differs(
    reference: Path, sources: Path, tmp_path: Path
) -> None:
    generate(make_config(sources), tmp_path / "again")
    assert tree(tmp_path / "again") == tree(reference)
    generate(make_config(sources, seed=8), tmp_path / "other", stages=["normals", "anomalies"])
    other = tree(tmp_path / "other")
    copied = "candidates/normals/000003.png"
    assert other[copied] == tree(reference)[copied]
    assert other["candidates/images/000003.png"] != tree(reference)["candidates/images/000003.png"]


def test_resume_after_kill_equals_uninterrupted(
    reference: Path, sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(sources)))
    # SIGKILL after the 8th candidate's files are written but before its manifest record.
    crashed = run_cli(["--config", str(cfg), "--out", str(out)], env={CRASH_ENV: "anomalies:8"})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert len(list((out / "candidates/images").iterdir())) == 8
    assert not (out / "manifest.jsonl").exists() and not (out / "train/bad").exists()
    # A recorded file damaged after the crash is detected by its hash and redone; a temporary
    # file of a killed writer is cleaned up.
    (out / "candidates/normals/000002.png").write_bytes(b"garbage")
    (out / "candidates/normals/.tmp-000005.png.123.abc").write_bytes(b"partial")
    generate(make_config(sources), out)
    assert tree(out) == tree(reference)
    # Only the missing work was redone: 12 + 1 normals records, 7 + 5 candidates, 12 filtered.
    counts = {
        stage: sum(len(p.read_text().splitlines()) for p in (out / "manifest" / stage).iterdir())
        for stage in ("normals", "anomalies", "filter")
    }
    assert counts == {"normals": 13, "anomalies": 12, "filter": NUM}


def test_two_process_ddp_equals_single_process(
    reference: Path, sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(sources)))
    result = run_cli(
        ["--config", str(cfg), "--out", str(out), "--devices", "2", "--accelerator", "cpu"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree(out) == tree(reference)
    for stage in ("normals", "anomalies", "filter"):  # both ranks did part of each stage
        shards = list((out / "manifest" / stage).glob("*.jsonl"))
        sizes = sorted(len(p.read_text().splitlines()) for p in shards)
        assert len(shards) == 2 and sum(sizes) == NUM and sizes[0] >= 1


def test_train_ok_all_keeps_every_normal(reference: Path, sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    summary = generate(make_config(sources, train_ok="all"), out)
    assert summary is not None and summary["dropped_empty_mask"] >= 1
    ok = sorted(p.name for p in (out / "train/ok").iterdir())
    assert ok == [f"{i:06d}.png" for i in range(NUM)]  # dropped pairs' normals too
    assert len(list((out / "train/bad").iterdir())) == summary["kept"] < NUM
    same = tree(out)
    for name, data in tree(reference).items():  # everything else is the default run's bytes
        if name not in ("manifest.jsonl", "summary.json"):
            assert same[name] == data, name
    with pytest.raises(ValueError, match=r"train_ok: recorded 'all', now 'kept'"):
        generate(make_config(sources), out)
    with pytest.raises(ValueError, match=r"option 'train_ok' must be one of \['kept', 'all'\]"):
        generate(make_config(sources, train_ok="half"), tmp_path / "bad")


def test_config_mismatch_on_resume_names_the_option(reference: Path, sources: Path) -> None:
    before = tree(reference)
    with pytest.raises(ValueError, match=r"seed: recorded 7, now 8"):
        generate(make_config(sources, seed=8), reference)
    changed = make_config(sources)
    changed["anomalies"]["generator"]["init_args"]["mask_type"] = "polygon"
    with pytest.raises(ValueError, match=r"anomalies\.generator\.init_args\.mask_type"):
        generate(changed, reference, stages=["filter"])
    with pytest.raises(ValueError, match=r"option 'num'.*num=12, now 10"):
        generate(make_config(sources, num=10), reference)
    assert tree(reference) == before


def test_stage_without_upstream_output_fails_clearly(sources: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs the 'normals' stage's output.*--stages normals"):
        generate(make_config(sources), tmp_path, stages=["anomalies"])


def test_bad_source_image_named_or_skipped(sources: Path, tmp_path: Path, capsys: Any) -> None:
    src = tmp_path / "src"
    shutil.copytree(sources, src)
    data = (src / "n1.png").read_bytes()
    (src / "n1.png").write_bytes(data[: len(data) // 2])  # truncated
    config = make_config(src, num=4, filter=None)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["generate", "--config", str(cfg), "--out", str(tmp_path / "a")]) == 2
    assert "n1.png" in capsys.readouterr().err

    config["normals"]["on_bad_source"] = "skip"
    summary = generate(config, tmp_path / "b")
    assert summary is not None
    assert summary["generated"] == 3 and summary["kept"] == 3 and summary["candidates"] == 3
    assert [b["source"] for b in summary["bad_sources"]] == ["n1.png"]
    assert not (tmp_path / "b/candidates/normals/000001.png").exists()
    lines = (tmp_path / "b/manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["filter"]["status"] == "skipped"


def test_unknown_option_is_named(sources: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option.*'filters'"):
        generate({**make_config(sources), "filters": None}, tmp_path)
    bad = make_config(sources)
    bad["normals"]["image_sise"] = 64
    with pytest.raises(ValueError, match="config section 'normals'.*image_sise"):
        generate(bad, tmp_path)


def test_preview_subcommand_reads_the_generated_dataset(reference: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    args = ["--source", str(reference), "--num", "3", "--size", "32", "--out", str(sheet)]
    assert main(["preview", *args]) == 0
    with Image.open(sheet) as img:
        assert img.size[0] > 32 and img.size[1] >= 3 * 32


def test_shipped_configs_build_their_stages(sources: Path, tmp_path: Path) -> None:
    from data_synthesis.pipeline import build_stage, load_config

    configs = REPO / "experiments/configs/synthesis"
    ref = load_config(configs / "reference.yaml")
    assert ref["num"] == 10000
    # Models are loaded lazily, so building the stages needs neither network nor GPU.
    normals = build_stage("normals", ref, tmp_path)
    gen = normals.generator  # type: ignore[attr-defined]
    assert type(gen).__name__ == "NormalImageGenerator"
    assert (gen.model, gen.height, gen.steps, gen.guidance_scale) == (
        "black-forest-labs/FLUX.1-Krea-dev",
        1024,
        20,
        4.0,
    )
    inpaint = build_stage("anomalies", ref, tmp_path).generator  # type: ignore[attr-defined]
    assert type(inpaint).__name__ == "DiffusionInpaintGenerator"
    # The reference inpaints with the normals' own model (as FluxInpaintPipeline), from noise.
    assert (inpaint.model, inpaint.steps, inpaint.guidance_scale, inpaint.strength) == (
        "black-forest-labs/FLUX.1-Krea-dev",
        20,
        4.0,
        1.0,
    )
    assert inpaint.restore_outside and inpaint.feather > 0 and ref["train_ok"] == "kept"
    filt = build_stage("filter", ref, tmp_path).filter  # type: ignore[attr-defined]
    assert (filt.backbone, filt.image_size, filt.threshold) == (
        "vit_large_patch16_dinov3.lvd1689m",
        1024,
        0.25,
    )

    cpu = load_config(configs / "classic_cpu.yaml", num=2)
    cpu["normals"]["source_dir"] = str(sources)
    summary = generate(cpu, tmp_path / "cpu")
    assert summary is not None and summary["kept"] == 2
    with Image.open(tmp_path / "cpu/train/bad/000001.png") as img:
        assert img.size == (768, 768)


def test_diffusion_stages_end_to_end(tmp_path: Path) -> None:
    """Text-to-image normals and inpainting through the pipeline, on tiny random pipelines."""
    pytest.importorskip("diffusers")
    from tests.data.diffusers import tiny

    text2img = tiny.write_text2img(tmp_path / "t2i")
    inpaint = tiny.write_inpaint(tmp_path / "inpaint")
    config = {
        "seed": 1,
        "num": 3,
        "batch_size": 3,
        "normals": {
            "generator": {
                "class_path": "NormalImageGenerator",
                "init_args": {"model": str(text2img), "height": 64, "width": 64, "steps": 2},
            }
        },
        "anomalies": {
            "generator": {
                "class_path": "DiffusionInpaintGenerator",
                "init_args": {"model": str(inpaint), "steps": 2, "box_min": 150},
            }
        },
        "filter": TINY_FILTER,
    }
    summary = generate(config, tmp_path / "out")
    assert summary is not None and summary["generated"] == summary["candidates"] == 3
    entries = [json.loads(s) for s in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
    for entry in entries:
        normal, anomaly = entry["normals"]["params"], entry["anomalies"]["params"]
        assert normal["prompt"].startswith(f"a close-up photo of a {normal['object']}")
        assert anomaly["object"] == normal["object"]  # the defect prompt fits the normal's object
        assert anomaly["defect"] in anomaly["prompt"]
        # The defect prompt repeats the normal's background (textures have none).
        assert anomaly["background"] == normal["background"] and not anomaly["background_drawn"]
        if normal["background"] is not None:
            assert anomaly["prompt"].endswith(f"Centered. {normal['background']} background.")
    with Image.open(tmp_path / "out/train/ok/000002.png") as img:
        assert img.size == (64, 64)
    assert len(list((tmp_path / "out/train/bad").iterdir())) == summary["kept"]
