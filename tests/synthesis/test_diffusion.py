"""Diffusion generators end to end on tiny random pipelines loaded by local path (CPU, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from data_synthesis._diffusers import pipeline_loader
from data_synthesis.foreground import SegmentationForeground, compute_foreground
from data_synthesis.inpaint import DiffusionInpaintGenerator, blend_weights
from data_synthesis.normals import NormalImageGenerator
from data_synthesis.vocab import load_vocabulary
from tests.conftest import REPO
from tests.data.diffusers import tiny

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_diffusers")
    return tiny.write_inpaint(root / "inpaint"), tiny.write_text2img(root / "text2img")


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX text-to-image checkpoint (FLUX.1-Krea-dev's architecture)."""
    return tiny.write_flux(tmp_path_factory.mktemp("tiny_flux") / "flux")


@pytest.fixture(scope="module")
def inpainter(pipes: tuple[Path, Path]) -> DiffusionInpaintGenerator:
    return DiffusionInpaintGenerator(model=str(pipes[0]), steps=2, device="cpu")


def _object_image(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 0.85, np.float32) + rng.normal(0, 0.01, (h, w, 3)).astype(np.float32)
    img[h // 4 : h // 2, w // 2 : 3 * w // 4] = (0.2, 0.3, 0.6)
    return np.clip(img, 0, 1)


def test_loading_is_lazy_and_real(pipes: tuple[Path, Path]) -> None:
    gen = DiffusionInpaintGenerator(model=str(pipes[0]), steps=2, device="cpu")
    assert gen._pipe is None  # construction is offline-safe
    assert type(gen.pipeline).__name__ == "StableDiffusionInpaintPipeline"
    assert "diffusers" not in sys.modules or gen.pipeline is gen.pipeline


def test_inpaint_seeded_and_restores_outside(inpainter: DiffusionInpaintGenerator) -> None:
    img = _object_image()
    a = inpainter(img, np.random.default_rng(7))
    b = inpainter(img, np.random.default_rng(7))
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert a.params == b.params
    c = inpainter(img, np.random.default_rng(8))
    assert c.params["seed"] != a.params["seed"]
    assert a.image.shape == img.shape and a.image.dtype == np.float32
    inside = a.mask > 0
    y0, x0, y1, x1 = a.params["box"]
    assert inside.sum() == (y1 - y0) * (x1 - x0) and inside[y0:y1, x0:x1].all()
    np.testing.assert_array_equal(a.image[~inside], img[~inside])
    assert np.abs(a.image[inside] - img[inside]).max() > 0.05  # the box really was inpainted
    entry = load_vocabulary().entry(a.params["object"])
    assert a.params["defect"] in entry.defects
    assert a.params["prompt"].startswith(f"a close-up photo of a {a.params['defect']} ")


def test_no_restore_changes_outside(pipes: tuple[Path, Path]) -> None:
    gen = DiffusionInpaintGenerator(model=str(pipes[0]), steps=2, restore_outside=False)
    img = _object_image(40, 40)  # 40 is a multiple of 8; 44 below is not
    out = gen(img, np.random.default_rng(1))
    assert np.abs(out.image[out.mask == 0] - img[out.mask == 0]).max() > 0
    odd = gen(_object_image(44, 52), np.random.default_rng(1))
    assert odd.image.shape == (44, 52, 3) and odd.params["working_size"] == [48, 56]


def test_box_scales_with_image_and_centres_on_foreground(
    inpainter: DiffusionInpaintGenerator,
) -> None:
    for size in (32, 64):
        img = _object_image(size, size)
        fg, _ = compute_foreground(img, "threshold")
        scale = size / 1024
        for seed in range(6):
            plan = inpainter._plan(img, np.random.default_rng(seed), "apple", None, 0)
            cy, cx = plan["centre"]
            assert fg[cy, cx]  # apple is not a texture: threshold foreground
            y0, x0, y1, x1 = plan["box"]
            assert 0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size
            assert y1 - y0 <= round(300 * scale) and x1 - x0 <= round(300 * scale)
            assert plan["box_scale"] == pytest.approx(scale)
    big = inpainter._plan(_object_image(1024, 1024), np.random.default_rng(0), "apple", None, 0)
    assert big["foreground"]["method"] == "threshold"
    y0, x0, y1, x1 = big["box"]
    assert y1 - y0 >= 1 and (y1 - y0 <= 300 and x1 - x0 <= 300)


def test_texture_uses_whole_image_and_given_foreground(
    inpainter: DiffusionInpaintGenerator,
) -> None:
    img = _object_image(32, 32)
    plan = inpainter._plan(img, np.random.default_rng(0), "concrete", None, 0)
    assert plan["foreground"]["method"] == "all" and plan["foreground"]["fraction"] == 1.0
    fg = np.zeros((32, 32), bool)
    fg[3, 29] = True
    for seed in range(3):
        p = inpainter._plan(img, np.random.default_rng(seed), "apple", fg, 0)
        assert p["centre"] == [3, 29]
    with pytest.raises(ValueError, match=r"foregrounds\[0\]"):
        inpainter._plan(img, np.random.default_rng(0), "apple", np.ones((8, 8), bool), 0)
    with pytest.raises(ValueError, match="objects.yaml"):
        inpainter._plan(img, np.random.default_rng(0), "spaceship", None, 0)


def test_batched_generate_matches_single_calls(inpainter: DiffusionInpaintGenerator) -> None:
    imgs = [_object_image(32, 40), np.random.default_rng(3).random((32, 40, 3), np.float32)]
    objs = ["apple", "concrete"]
    batch = inpainter.generate(imgs, [np.random.default_rng(s) for s in (1, 2)], objects=objs)
    for img, obj, seed, got in zip(imgs, objs, (1, 2), batch):
        one = inpainter.generate([img], [np.random.default_rng(seed)], objects=[obj])[0]
        assert got.params == one.params and got.params["object"] == obj
        np.testing.assert_array_equal(got.mask, one.mask)
        np.testing.assert_allclose(got.image, one.image, atol=1e-4)
    with pytest.raises(ValueError, match="lengths must match"):
        inpainter.generate(imgs, [np.random.default_rng(0)])


def test_text2img_prompts_and_batch(pipes: tuple[Path, Path]) -> None:
    gen = NormalImageGenerator(model=str(pipes[1]), height=32, width=32, steps=2, device="cpu")
    vocab = load_vocabulary()
    for seed in range(30):
        prompt, p = gen.sample_prompt(np.random.default_rng(seed))
        kind = " texture" if p["texture"] else ""
        head = f"a close-up photo of a {p['object']}{kind} for industrial visual inspection."
        assert prompt.startswith(head) and p["texture"] == vocab.entry(p["object"]).texture
        if p["texture"]:
            assert p["background"] is None and prompt.endswith("Centered.")
        else:
            assert p["background"] in vocab.backgrounds
            assert prompt.endswith(f"Centered. {p['background']} background.")
    out = gen.generate([np.random.default_rng(s) for s in (0, 1)])
    again = gen(np.random.default_rng(1))
    assert [im.shape for im, _ in out] == [(32, 32, 3)] * 2
    assert out[1][1] == again[1]
    np.testing.assert_allclose(out[1][0], again[0], atol=1e-4)
    single = gen(np.random.default_rng(0))[0]
    assert single.tobytes() == gen(np.random.default_rng(0))[0].tobytes()
    with pytest.raises(ValueError, match="model="):
        NormalImageGenerator()


def test_vocabulary_errors_name_the_file(tmp_path: Path) -> None:
    vocab = load_vocabulary()
    assert 90 <= len(vocab.objects) <= 110 and len(vocab.backgrounds) >= 45
    assert 0.25 <= np.mean([e.texture for e in vocab.objects.values()]) <= 0.4
    bad = tmp_path / "bad.yaml"
    for text in (
        "objects: [a, b]",
        "objects:\n  apple: {defects: []}",
        "objects: {x: {texture: 1, defects: [a]}}",
        "objects: {",
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match="bad.yaml"):
            load_vocabulary(bad)
    empty = tmp_path / "bg.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="bg.txt"):
        load_vocabulary(None, empty)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_vocabulary(tmp_path / "missing.yaml")


def test_foreground_methods() -> None:
    img = _object_image(48, 64)
    obj = np.zeros((48, 64), bool)
    obj[12:24, 32:48] = True
    fg, info = compute_foreground(img, "threshold")
    assert fg[obj].mean() > 0.95 and not fg[~obj].any() and not info["fallback"]
    sal, _ = compute_foreground(img, "saliency")
    assert sal[obj].mean() > 3 * sal[~obj].mean()
    assert compute_foreground(img, "all")[0].all()
    flat = np.full((16, 16, 3), 0.5, np.float32)
    for method in ("threshold", "saliency"):
        mask, info = compute_foreground(flat, method)
        assert mask.all() and info["fallback"]
    seg = SegmentationForeground(predictor=lambda im: im[..., 2])
    mask, info = seg(img)
    assert mask[obj].all() and info["method"] == "segmentation"
    assert SegmentationForeground(predictor=lambda im: im[..., 0] * 0)(img)[1]["fallback"]
    with pytest.raises(ValueError, match="unknown foreground method"):
        compute_foreground(img, "magic")  # type: ignore[arg-type]


def test_pipeline_class_follows_the_checkpoint(
    pipes: tuple[Path, Path], flux: Path, tmp_path: Path
) -> None:
    import diffusers

    # A FLUX text-to-image checkpoint (FLUX.1-Krea-dev) inpaints through FluxInpaintPipeline.
    gen = DiffusionInpaintGenerator(model=str(flux), steps=2, device="cpu")
    assert type(gen.pipeline).__name__ == "FluxInpaintPipeline"
    normals = NormalImageGenerator(model=str(flux), height=32, width=32, steps=2, device="cpu")
    assert type(normals.pipeline).__name__ == "FluxPipeline"
    # SD checkpoints keep loading: an inpainting one as itself, a text-to-image one as its
    # family's inpainting pipeline.
    assert pipeline_loader("inpaint", str(pipes[0])) is diffusers.StableDiffusionInpaintPipeline
    sd = DiffusionInpaintGenerator(model=str(pipes[1]), steps=2, device="cpu")
    assert type(sd.pipeline).__name__ == "StableDiffusionInpaintPipeline"
    # A FLUX Fill checkpoint, which AutoPipelineForInpainting has no mapping for, loads as itself.
    fill = tmp_path / "fill"
    fill.mkdir()
    (fill / "model_index.json").write_text(json.dumps({"_class_name": "FluxFillPipeline"}))
    assert pipeline_loader("inpaint", str(fill)) is diffusers.FluxFillPipeline
    assert pipeline_loader("inpaint", str(fill), "FluxInpaintPipeline") is (
        diffusers.FluxInpaintPipeline
    )
    with pytest.raises(ValueError, match="pipeline_class.*NoSuchPipeline"):
        pipeline_loader("inpaint", str(fill), "NoSuchPipeline")


def test_flux_inpaint_strength_and_guidance_reach_the_pipeline(flux: Path) -> None:
    img = _object_image(64, 64)
    kw: dict[str, Any] = {"steps": 2, "device": "cpu", "size_multiple": 16, "reference_size": 64}
    kw.update(box_min=20, box_max=30, feather=0)
    ref = DiffusionInpaintGenerator(model=str(flux), strength=1.0, guidance_scale=4.0, **kw)
    a = ref(img, np.random.default_rng(3))
    assert a.params["pipeline"] == "FluxInpaintPipeline"
    assert (a.params["strength"], a.params["guidance_scale"]) == (1.0, 4.0)
    inside = a.mask > 0
    np.testing.assert_array_equal(a.image[~inside], img[~inside])
    assert np.abs(a.image[inside] - img[inside]).max() > 0.05
    # Same seed and box, other strength or guidance: other pixels inside the box (at 2 steps,
    # strength 0.5 skips the first step; FLUX's default 0.6 would still start from pure noise).
    weak = DiffusionInpaintGenerator(model=str(flux), strength=0.5, guidance_scale=4.0, **kw)
    b = weak(img, np.random.default_rng(3))
    assert b.params["box"] == a.params["box"]
    assert np.abs(a.image - b.image).max() > 1e-3
    other = DiffusionInpaintGenerator(model=str(flux), strength=1.0, guidance_scale=7.0, **kw)
    assert np.abs(a.image - other(img, np.random.default_rng(3)).image).max() > 1e-3
    with pytest.raises(ValueError, match="strength"):
        DiffusionInpaintGenerator(model=str(flux), strength=1.5)


def _border_jump(diff: np.ndarray, box: list[int]) -> float:
    """Largest step of ``diff`` between each box edge pixel and its outside neighbour."""
    y0, x0, y1, x1 = box
    h, w = diff.shape
    jumps = [0.0]
    if y0 > 0:
        jumps.append(float(np.abs(diff[y0, x0:x1] - diff[y0 - 1, x0:x1]).max()))
    if y1 < h:
        jumps.append(float(np.abs(diff[y1 - 1, x0:x1] - diff[y1, x0:x1]).max()))
    if x0 > 0:
        jumps.append(float(np.abs(diff[y0:y1, x0] - diff[y0:y1, x0 - 1]).max()))
    if x1 < w:
        jumps.append(float(np.abs(diff[y0:y1, x1 - 1] - diff[y0:y1, x1]).max()))
    return max(jumps)


def test_restore_outside_blends_across_the_box_edge(flux: Path) -> None:
    img = _object_image(64, 64)
    kw: dict[str, Any] = {"steps": 2, "device": "cpu", "size_multiple": 16, "reference_size": 64}
    kw.update(box_min=28, box_max=36, foreground="all")
    soft = DiffusionInpaintGenerator(model=str(flux), feather=6, **kw)
    hard = DiffusionInpaintGenerator(model=str(flux), feather=0, **kw)
    jumps: dict[str, list[float]] = {"soft": [], "hard": []}
    for seed in range(2):
        outs = {
            name: gen(img, np.random.default_rng(seed))
            for name, gen in (("soft", soft), ("hard", hard))
        }
        for name, out in outs.items():
            diff = np.abs(out.image - img).max(axis=-1)
            assert not diff[out.mask == 0].any()  # outside the box: the normal's pixels exactly
            jumps[name].append(_border_jump(diff, out.params["box"]))
        # Deeper than the feather inside the box, both keep the generated pixels as they are.
        y0, x0, y1, x1 = outs["soft"].params["box"]
        centre = (slice(y0 + 7, y1 - 7), slice(x0 + 7, x1 - 7))
        np.testing.assert_array_equal(outs["soft"].image[centre], outs["hard"].image[centre])
    # The blend rises by at most 1 / (feather + 1) per pixel at the edge; a hard paste jumps.
    assert max(jumps["soft"]) <= 1 / 7 + 1e-6
    assert max(jumps["hard"]) > 0.3


def test_blend_weights() -> None:
    mask = np.zeros((20, 20), np.float32)
    mask[0:10, 5:15] = 1  # the top edge lies on the image border
    w = blend_weights(mask, 3)
    assert not w[mask == 0].any() and w.max() == 1.0
    np.testing.assert_allclose(w[5, 5:9], [0.25, 0.5, 0.75, 1.0])  # left edge ramps
    np.testing.assert_allclose(w[9, 7:13], 0.25)  # bottom edge row
    assert (w[0, 8:12] == 1.0).all()  # no ramp along the image border
    np.testing.assert_array_equal(blend_weights(mask, 0), mask)
    assert blend_weights(np.ones((4, 4)), 3).min() == 1.0


def _tiny_segformer(root: Path, image: np.ndarray) -> Path:
    """A randomly initialised Segformer (background / object) saved with its image processor.

    The object class's bias is set so about half of ``image`` is labelled object (random weights
    would otherwise label nearly everything one class).
    """
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    torch.manual_seed(0)
    labels = {0: "background", 1: "object"}
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=2,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = SegformerForSemanticSegmentation(config).eval()
    processor = SegformerImageProcessor(size={"height": 64, "width": 64})
    margin = _object_logit_margin(model, processor, image)
    model.decode_head.classifier.bias.data[1] -= margin.median()
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def _object_logit_margin(model: Any, processor: Any, image: np.ndarray) -> Any:
    """Per-pixel object minus background logit, upsampled to the image size (flattened)."""
    import torch

    pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
    with torch.no_grad():
        logits = model(**processor(images=pil, return_tensors="pt")).logits
    logits = torch.nn.functional.interpolate(
        logits, size=image.shape[:2], mode="bilinear", align_corners=False
    )[0]
    return (logits[1] - logits[0]).flatten()


def test_segmentation_model_places_the_box(tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    img = np.random.default_rng(5).random((48, 64, 3)).astype(np.float32)
    folder = _tiny_segformer(tmp_path / "seg", img)
    # The mask computed independently from the saved model: pixels whose object logit wins.
    model = AutoModelForSemanticSegmentation.from_pretrained(folder).eval()
    margin = _object_logit_margin(model, AutoImageProcessor.from_pretrained(folder), img)
    expected = (margin > 0).reshape(img.shape[:2]).numpy()
    assert 0.3 < expected.mean() < 0.7

    seg = SegmentationForeground(model=str(folder), device="cpu")
    mask, info = seg(img)
    assert info["method"] == "segmentation" and not info["fallback"]
    assert (mask == expected).mean() > 0.99
    # From a config, the segmenter is the model's folder (or a mapping of its options).
    gen = DiffusionInpaintGenerator(model="unused", segmenter=str(folder), device="cpu")
    for seed in range(12):
        plan = gen._plan(img, np.random.default_rng(seed), "apple", None, 0)
        assert plan["foreground"]["method"] == "segmentation"
        assert mask[tuple(plan["centre"])]
    assert gen._plan(img, np.random.default_rng(0), "concrete", None, 0)["foreground"] == {
        "method": "all",
        "fraction": 1.0,
        "fallback": False,
    }  # textures: the whole image, as in the reference
    opts = {"model": str(folder), "background_labels": ["object"], "device": "cpu"}
    inverse = DiffusionInpaintGenerator(model="unused", segmenter=opts).segmenter
    assert inverse is not None and ((inverse(img)[0] == ~expected).mean() > 0.99)


_SALIENT_CONFIG = """
from transformers import PretrainedConfig


class TinySalientConfig(PretrainedConfig):
    model_type = "tiny_salient"
"""
_SALIENT_MODEL = """
import torch
from transformers import PreTrainedModel

from .configuration_tiny_salient import TinySalientConfig


class TinySalient(PreTrainedModel):
    config_class = TinySalientConfig

    def __init__(self, config):
        super().__init__(config)
        self.head = torch.nn.Conv2d(3, 1, 1)
        self.post_init()

    def forward(self, pixel_values):
        fine = self.head(pixel_values)
        return [torch.nn.functional.avg_pool2d(fine, 2), fine]  # coarse to fine, as BiRefNet
"""


def _tiny_salient_model(root: Path) -> Path:
    """A salient-object model with its own code (as BiRefNet): one 1x1 conv, saved offline.

    Its logit is -5 x the normalised red channel, so it calls the bluish object of
    ``_object_image`` salient and the light background not.
    """
    import torch
    from safetensors.torch import save_file

    root.mkdir()
    (root / "configuration_tiny_salient.py").write_text(_SALIENT_CONFIG)
    (root / "modeling_tiny_salient.py").write_text(_SALIENT_MODEL)
    auto = {
        "AutoConfig": "configuration_tiny_salient.TinySalientConfig",
        "AutoModelForImageSegmentation": "modeling_tiny_salient.TinySalient",
    }
    config = {"model_type": "tiny_salient", "architectures": ["TinySalient"], "auto_map": auto}
    (root / "config.json").write_text(json.dumps(config))
    weight = torch.tensor([-5.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    save_file({"head.weight": weight, "head.bias": torch.zeros(1)}, str(root / "model.safetensors"))
    return root


def test_salient_object_model_places_the_box(tmp_path: Path) -> None:
    img = _object_image(48, 64)
    obj = np.zeros((48, 64), bool)
    obj[12:24, 32:48] = True
    folder = _tiny_salient_model(tmp_path / "salient")
    opts = {"model": str(folder), "kind": "salient", "input_size": 32, "device": "cpu"}
    seg = SegmentationForeground(**opts, trust_remote_code=True)
    mask, info = seg(img)
    assert info["method"] == "segmentation" and not info["fallback"]
    assert mask[obj].mean() > 0.9 and mask[~obj].mean() < 0.05
    # The coarse map (first output) at half resolution, taken as probabilities: other scores.
    coarse = SegmentationForeground(**opts, trust_remote_code=True, output_index=[0], sigmoid=False)
    assert (coarse(img)[0] != mask).any()
    gen = DiffusionInpaintGenerator(model="unused", segmenter={**opts, "trust_remote_code": True})
    for seed in range(8):
        plan = gen._plan(img, np.random.default_rng(seed), "apple", None, 0)
        assert mask[tuple(plan["centre"])] and plan["foreground"]["method"] == "segmentation"
    with pytest.raises(ValueError, match="kind must be 'segments' or 'salient'"):
        SegmentationForeground(model=str(folder), kind="boxes")  # type: ignore[arg-type]


@pytest.mark.slow
def test_reference_recipe_end_to_end_on_tiny_models(flux: Path, tmp_path: Path) -> None:
    """Every stage of reference.yaml as a user runs it, models and sizes swapped for tiny ones."""
    config = yaml.safe_load((REPO / "experiments/configs/synthesis/reference.yaml").read_text())
    config.update(num=4, batch_size=2, num_workers=0)
    tiny_run = {"model": str(flux), "dtype": "float32", "steps": 2}
    normals = config["normals"]["generator"]["init_args"]
    normals.update(tiny_run, height=64, width=64)
    inpaint = config["anomalies"]["generator"]["init_args"]
    inpaint.update(tiny_run, box_min=400, box_max=600)  # at 64 px: 25-37 px boxes
    filt = config["filter"]["init_args"]
    filt.update(pretrained=False, model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
    filt.update(image_size=64)
    cfg = tmp_path / "reference_tiny.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "data_synthesis", "generate", "--config", str(cfg)]
        + ["--out", str(out), "--accelerator", "cpu"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generated"] == summary["candidates"] == 4
    assert summary["kept"] >= 1 and summary["kept"] + summary["dropped_empty_mask"] == 4
    bad = sorted(p.name for p in (out / "train/bad").iterdir())
    assert len(bad) == summary["kept"]
    assert sorted(p.name for p in (out / "train/ok").iterdir()) == bad  # 1:1, as the reference
    assert sorted(p.name for p in (out / "ground_truth/bad").iterdir()) == bad
    for name in bad:
        mask = np.asarray(Image.open(out / "ground_truth/bad" / name))
        box = np.asarray(Image.open(out / "candidates/masks" / name)) > 0
        assert mask.shape == (64, 64) and mask.any() and not (mask[~box]).any()
        with Image.open(out / "train/bad" / name) as image:
            assert image.size == (64, 64)
    entries = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    for entry in entries:
        params = entry["anomalies"]["params"]
        assert params["pipeline"] == "FluxInpaintPipeline"
        assert (params["strength"], params["guidance_scale"], params["steps"]) == (1.0, 4.0, 2)
        assert params["foreground"]["method"] in ("threshold", "all")
        assert entry["normals"]["params"]["guidance_scale"] == 4.0
