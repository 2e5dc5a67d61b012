"""Diffusion generators end to end on tiny random pipelines loaded by local path (CPU, offline)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from data_synthesis.foreground import SegmentationForeground, compute_foreground
from data_synthesis.inpaint import DiffusionInpaintGenerator
from data_synthesis.normals import NormalImageGenerator
from data_synthesis.vocab import load_vocabulary
from tests.data.diffusers import tiny

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_diffusers")
    return tiny.write_inpaint(root / "inpaint"), tiny.write_text2img(root / "text2img")


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
