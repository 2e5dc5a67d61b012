"""The online generators' contract: seeded, pure, local to the mask, JSON-able params."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from data_synthesis import CutPasteGenerator, NoiseTextureGenerator
from data_synthesis.base import AnomalyGeneratorBase
from tests.conftest import SHARED_DATA

DTD = SHARED_DATA / "dtd"
needs_dtd = pytest.mark.skipif(not DTD.is_dir(), reason=f"texture folder {DTD} is absent")

FACTORIES: dict[str, Callable[[], AnomalyGeneratorBase]] = {
    "noise_procedural": NoiseTextureGenerator,
    "cutpaste_perlin": lambda: CutPasteGenerator(mask_type="perlin"),
    "cutpaste_box": lambda: CutPasteGenerator(mask_type="box"),
    "cutpaste_polygon": lambda: CutPasteGenerator(mask_type="polygon"),
    "cutpaste_no_rotation_no_jitter": lambda: CutPasteGenerator(
        mask_type="box", rotation=False, augment=None
    ),
}
CASES = [
    *FACTORIES,
    pytest.param("noise_dtd", marks=needs_dtd),
    pytest.param("cutpaste_dtd", marks=needs_dtd),
]


def make(name: str) -> AnomalyGeneratorBase:
    if name == "noise_dtd":
        return NoiseTextureGenerator(texture_dir=str(DTD))
    if name == "cutpaste_dtd":
        return CutPasteGenerator(mask_type="polygon", source_dir=str(DTD))
    return FACTORIES[name]()


def image(seed: int = 0, shape: tuple[int, int] = (72, 64)) -> np.ndarray:
    """A smooth, textured test image (so pasted patches differ from where they land)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xs[..., None] / 5.0 + np.array([0.0, 1.0, 2.0]) + ys[..., None] / 9)
    return np.clip(base + rng.normal(0, 0.05, (*shape, 3)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", CASES)
def test_same_seed_is_byte_identical_and_seeds_differ(name: str) -> None:
    img = image()
    a = make(name)(img, np.random.default_rng(7))
    b = make(name)(img, np.random.default_rng(7))
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)
    others = [make(name)(img, np.random.default_rng(s)) for s in (8, 9)]
    assert all(o.image.tobytes() != a.image.tobytes() for o in others)
    assert all(o.params != a.params for o in others)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_output_is_local_to_a_binary_nonempty_mask(name: str, seed: int) -> None:
    img = image(seed)
    before = img.copy()
    out = make(name)(img, np.random.default_rng(seed))
    assert img.tobytes() == before.tobytes()  # input never modified in place
    assert out.image.dtype == np.float32 and out.image.shape == img.shape
    assert out.mask.dtype == np.float32 and out.mask.shape == img.shape[:2]
    assert set(np.unique(out.mask).tolist()) <= {0.0, 1.0} and out.mask.sum() > 0
    outside = out.mask == 0
    assert np.array_equal(out.image[outside], img[outside])
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    changed = np.any(out.image != img, axis=2)
    assert changed[out.mask > 0].mean() > 0.5  # the mask marks pixels that really changed
    json.loads(json.dumps(out.params))  # JSON-serialisable
    assert out.params["generator"] == make(name).name


def test_texture_and_source_files_are_recorded(tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "tex" / "sub"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray((image(i, (40, 50)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    noise = NoiseTextureGenerator(texture_dir=str(tmp_path / "tex"))(
        image(), np.random.default_rng(0)
    )
    assert noise.params["texture"] == "file" and noise.params["texture_file"].startswith("sub/")
    paste = CutPasteGenerator(source_dir=str(tmp_path / "tex"))(image(), np.random.default_rng(0))
    assert paste.params["source"] == "file" and paste.params["source_file"].startswith("sub/")


@needs_dtd
def test_noise_textures_stay_finite_and_in_range() -> None:
    # Regression: brightness could push a texture below 0 and gamma then made NaN pixels in
    # about 3% of DTD anomalies (one NaN in a batch turns every weight into NaN).
    gen = NoiseTextureGenerator(texture_dir=str(DTD))
    image = np.full((64, 64, 3), 0.5, np.float32)
    for seed in range(200):
        out = gen(image, np.random.default_rng(seed)).image
        assert np.isfinite(out).all(), seed
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_texture_size_keeps_full_size_output_and_rejects_tiny_values() -> None:
    image = np.full((96, 80, 3), 0.5, np.float32)
    for size in (None, 16):
        anomaly = NoiseTextureGenerator(texture_size=size)(image, np.random.default_rng(1))
        assert anomaly.image.shape == image.shape and anomaly.mask.shape == image.shape[:2]
    with pytest.raises(ValueError, match="texture_size"):
        NoiseTextureGenerator(texture_size=4)
