"""``python -m anomalyvfm.convert`` on a model written in the authors' release format.

The released model is built here the way their code saves one: a DINOv2 backbone wrapper
(``net.`` + the torch.hub DINOv2's tensor names, whose blocks' ``attn.qkv`` and ``attn.proj``
are wrapped by their DoRA modules: the original linear under ``layer.``, ``lora_A_q``,
``lora_B_q``, ``lora_A_v``, ``lora_B_v``, ``mag_q``, ``mag_v`` on qkv and ``lora_A``,
``lora_B``, ``magnitude`` on proj), their ``SimpleDecoder`` (``bot.conv1``, ``bot.bn1``, ...,
``blocks.0.*``, ``final``, ``final_conf``) and ``SimplePredictor`` (``lin``), in the dict their
``train.py`` saves. Likewise a RADIO v2.5 release (their torch.hub layout, fused qkv) and CLIP
and SigLIP 2 releases in their Hugging Face upload (a transformers vision tower whose
``q_proj``/``v_proj``/``out_proj`` are wrapped). Tiny sizes of the real architecture, random
weights. The converted model's outputs are checked against a forward written here from those
tensors with their formulas (the transformers models themselves for CLIP and SigLIP 2), and the
converted checkpoints are evaluated with ``anomalyvfm test``, with the recipe config of their
backbone where one exists, shrunk to the tiny size.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import Tensor
from torch.nn import functional as F

from anomalyvfm import Detector
from anomalyvfm.convert import convert
from anomalyvfm.tasks import AnomalyVFM
from tests.conftest import REPO
from tests.helpers import TINY, child_env

ARCH = {"depth": 2, "embed_dim": 64, "num_heads": 2}  # their GroupNorm(32, .) needs 64 wide
SIZE, RANK, SCALE = 56, 4, 1.0 / 4  # their alpha is 1: scale alpha / rank
CONFIGS = REPO / "experiments" / "configs"
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def _backbone_tensors(gen: torch.Generator) -> dict[str, Tensor]:
    """Tensors of a tiny hub-style DINOv2 (the hub model and timm's share these names; the hub
    model also has a mask_token), with random values in place of pretrained ones."""
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=SIZE, **ARCH)
    state = {k: torch.randn(v.shape, generator=gen) * 0.2 for k, v in model.state_dict().items()}
    state["mask_token"] = torch.zeros(1, ARCH["embed_dim"])
    return state


def _their_file(path: Path, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """Writes the released .pkl (train.py's layout) and returns its three state dicts."""
    gen = torch.Generator().manual_seed(seed)
    d = ARCH["embed_dim"]
    backbone: dict[str, Tensor] = OrderedDict()
    for key, value in _backbone_tensors(gen).items():
        wrapped = key.rsplit(".", 1)[0].endswith(("attn.qkv", "attn.proj"))
        if wrapped:
            module, leaf = key.rsplit(".", 1)
            key = f"{module}.layer.{leaf}"
        backbone[f"net.{key}"] = value
    for i in range(ARCH["depth"]):
        qkv, proj = f"net.blocks.{i}.attn.qkv", f"net.blocks.{i}.attn.proj"
        for part in ("q", "v"):
            backbone[f"{qkv}.lora_A_{part}"] = torch.randn(RANK, d, generator=gen) * 0.3
            backbone[f"{qkv}.lora_B_{part}"] = torch.randn(d, RANK, generator=gen) * 0.3
            backbone[f"{qkv}.mag_{part}"] = torch.rand(d, generator=gen) + 0.5
        backbone[f"{proj}.lora_A"] = torch.randn(RANK, d, generator=gen) * 0.3
        backbone[f"{proj}.lora_B"] = torch.randn(d, RANK, generator=gen) * 0.3
        backbone[f"{proj}.magnitude"] = torch.rand(d, generator=gen) + 0.5

    decoder, predictor = _head_tensors(gen, d, d)
    saved = {
        "model_state_dict": backbone,
        "decoder_state_dict": decoder,
        "predictor_state_dict": predictor,
    }
    torch.save(saved, path)
    return saved


def _head_tensors(
    gen: torch.Generator, d: int, summary_dim: int
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Their SimpleDecoder (one up-block) on d channels and SimplePredictor on summary_dim."""

    def conv(c_out: int, c_in: int, k: int) -> list[Tensor]:
        return [torch.randn(c_out, c_in, k, k, generator=gen) * 0.1, torch.randn(c_out) * 0.1]

    def norm(c: int) -> list[Tensor]:
        return [torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen) * 0.1]

    decoder: dict[str, Tensor] = OrderedDict()
    layers = {
        "bot.conv1": conv(d, d, 3),
        "bot.bn1": norm(d),
        "bot.conv2": conv(d, d, 3),
        "bot.bn2": norm(d),
        "blocks.0.conv1": conv(d // 2, d, 3),
        "blocks.0.bn1": norm(d // 2),
        "blocks.0.conv2": conv(d // 2, d // 2, 3),
        "blocks.0.bn2": norm(d // 2),
        "final": conv(1, d // 2, 1),
        "final_conf": conv(1, d // 2, 1),
    }
    for name, (weight, bias) in layers.items():
        decoder[f"{name}.weight"], decoder[f"{name}.bias"] = weight, bias
    predictor = OrderedDict(
        [("lin.weight", torch.randn(1, summary_dim, generator=gen)), ("lin.bias", torch.randn(1))]
    )
    return decoder, predictor


def _dora(weight: Tensor, a: Tensor, b: Tensor, magnitude: Tensor, scale: float = SCALE) -> Tensor:
    """Their DoRA weight: magnitude x the row-normalised (W + scale B A); scale alpha / rank."""
    adapted = weight + (b @ a) * scale
    return magnitude[:, None] * adapted / (adapted.norm(dim=1, keepdim=True) + 1e-8)


def _their_forward(saved: dict[str, dict[str, Tensor]], images: Tensor) -> tuple[Tensor, Tensor]:
    """Anomaly logits and image logits as their modules compute them, from the saved tensors."""
    bb = saved["model_state_dict"]
    plain = {k[len("net.") :].replace(".layer.", "."): v for k, v in bb.items()}
    plain = {k: v for k, v in plain.items() if "lora" not in k and "mag" not in k}
    plain.pop("mask_token")
    for i in range(ARCH["depth"]):
        qkv, proj = f"blocks.{i}.attn.qkv", f"blocks.{i}.attn.proj"
        w_q, w_k, w_v = plain[f"{qkv}.weight"].chunk(3)
        q = _dora(w_q, bb[f"net.{qkv}.lora_A_q"], bb[f"net.{qkv}.lora_B_q"], bb[f"net.{qkv}.mag_q"])
        v = _dora(w_v, bb[f"net.{qkv}.lora_A_v"], bb[f"net.{qkv}.lora_B_v"], bb[f"net.{qkv}.mag_v"])
        plain[f"{qkv}.weight"] = torch.cat([q, w_k, v])
        plain[f"{proj}.weight"] = _dora(
            plain[f"{proj}.weight"],
            bb[f"net.{proj}.lora_A"],
            bb[f"net.{proj}.lora_B"],
            bb[f"net.{proj}.magnitude"],
        )
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=SIZE, **ARCH)
    vit.load_state_dict(plain)
    vit.eval()
    cfg = vit.pretrained_cfg
    mean, std = torch.tensor(cfg["mean"])[:, None, None], torch.tensor(cfg["std"])[:, None, None]
    with torch.no_grad():
        tokens = vit.forward_features((images - mean) / std)  # final norm applied
    return _their_head(saved, tokens[:, 1:], tokens[:, 0])


def _their_head(
    saved: dict[str, dict[str, Tensor]], patches: Tensor, summary: Tensor
) -> tuple[Tensor, Tensor]:
    """Their decoder on (B, N, C) patch tokens of a square grid, their predictor on summary."""
    grid = int(patches.shape[1] ** 0.5)
    x = patches.permute(0, 2, 1).reshape(len(patches), -1, grid, grid)
    dec = saved["decoder_state_dict"]

    def block(x: Tensor, conv: str, norm: str) -> Tensor:
        x = F.conv2d(x, dec[f"{conv}.weight"], dec[f"{conv}.bias"], padding=1)
        return F.relu(F.group_norm(x, 32, dec[f"{norm}.weight"], dec[f"{norm}.bias"]))

    with torch.no_grad():
        x = block(block(x, "bot.conv1", "bot.bn1"), "bot.conv2", "bot.bn2")
        x = F.interpolate(x, scale_factor=2)
        x = block(block(x, "blocks.0.conv1", "blocks.0.bn1"), "blocks.0.conv2", "blocks.0.bn2")
        mask = F.conv2d(x, dec["final.weight"], dec["final.bias"])
        pred = saved["predictor_state_dict"]
        score = F.linear(summary, pred["lin.weight"], pred["lin.bias"])
    return mask, score[:, 0]


def _converter(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anomalyvfm.convert", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(tmp_path, offline=True),
        timeout=300,
    )


def _tiny_args(tmp_path: Path) -> list[str]:
    return [
        "--timm-name=vit_small_patch14_dinov2",
        f"--model-kwargs={json.dumps(ARCH)}",
        f"--image-size={SIZE}",
        f"--backbone-weights={tmp_path / 'backbone.pth'}",
    ]


@pytest.mark.slow  # about 30 s: the converter and a tiny test run as subprocesses
def test_released_model_converts_evaluates_and_computes_their_outputs(
    tmp_path: Path, mvtec_root: Path
) -> None:
    saved = _their_file(tmp_path / "model.pkl")
    out = tmp_path / "converted.ckpt"
    proc = _converter(tmp_path, str(tmp_path / "model.pkl"), str(out), *_tiny_args(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout and "dora rank 4" in proc.stdout

    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["_class_path"] == "anomalyvfm.tasks.AnomalyVFM"
    assert hp["backbone"]["checkpoint_path"] == str((tmp_path / "backbone.pth").resolve())
    assert hp["backbone"]["summary"] == "cls" and hp["backbone"]["norm"] is True
    assert hp["adapter"] == {**hp["adapter"], "type": "dora", "rank": RANK, "alpha": 1.0}
    # Only the trained weights, as fit writes them: no frozen backbone tensor.
    state = ckpt["state_dict"]
    assert all(".lora_" in k or ".magnitude." in k for k in state if ".backbone." in k)
    dec = saved["decoder_state_dict"]
    assert torch.equal(state["model.decoder.bottleneck.3.weight"], dec["bot.conv2.weight"])
    assert torch.equal(state["model.decoder.up_blocks.0.5.bias"], dec["blocks.0.bn2.bias"])
    assert torch.equal(state["model.decoder.anomaly_head.weight"], dec["final.weight"])
    assert torch.equal(state["model.decoder.confidence_head.bias"], dec["final_conf.bias"])
    assert torch.equal(
        state["model.image_head.weight"], saved["predictor_state_dict"]["lin.weight"]
    )
    assert torch.equal(
        state["model.backbone.model.blocks.1.attn.qkv.lora_B.1"],
        saved["model_state_dict"]["net.blocks.1.attn.qkv.lora_B_v"],
    )

    # The model `test` builds from it computes what their modules compute.
    task = AnomalyVFM(**{k: v for k, v in hp.items() if not k.startswith("_")})
    missing, unexpected = task.load_state_dict(state, strict=False)
    assert not unexpected and all(k not in state for k in missing)
    task.eval()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = task.model(images)
    mask, score = _their_forward(saved, images)
    assert torch.allclose(ours.anomaly_logits, mask, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours.image_logits, score, atol=1e-4, rtol=1e-4)

    # The Detector API reads the converted checkpoint too, with the same scores.
    detector = Detector.from_checkpoint(out)
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    preds = detector.predict(list(pixels))
    with torch.no_grad():
        expected = task.model.predict(torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0)
    assert [p.score for p in preds] == pytest.approx(expected.pred_score.tolist(), abs=1e-5)

    _evaluates(
        tmp_path,
        out,
        mvtec_root,
        f"--config={TINY}",
        f"--model.init_args.backbone.model_kwargs={json.dumps(ARCH)}",
    )


def _evaluates(tmp_path: Path, ckpt: Path, mvtec_root: Path, *options: str) -> None:
    """``anomalyvfm test --ckpt_path ckpt`` with ``options`` runs on a tiny MVTec-AD layout and
    writes metrics."""
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anomalyvfm",
            "test",
            *options,
            f"--ckpt_path={ckpt}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=ResultsWriter",
            f"--trainer.callbacks.path={results}",
            "--data.test_datasets+=MVTecAD",
            f"--data.test_datasets.root={mvtec_root}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(tmp_path, offline=True),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no --ckpt_path given" not in proc.stderr
    means = json.loads(results.read_text())["mean"]
    assert 0.0 <= means["image_AUROC"] <= 1.0 and 0.0 <= means["pixel_AUROC"] <= 1.0


def test_hugging_face_layout_converts_to_the_same_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    saved = _their_file(tmp_path / "model.pkl")
    # hf_model.AnomalyVFM: attributes model, decoder, predictor; config.json names the backbone.
    flat = {
        f"{part}.{k}": v.contiguous()
        for part, key in (
            ("model", "model_state_dict"),
            ("decoder", "decoder_state_dict"),
            ("predictor", "predictor_state_dict"),
        )
        for k, v in saved[key].items()
    }
    hf = tmp_path / "hf"
    hf.mkdir()
    save_file(flat, str(hf / "model.safetensors"))
    config = {"model_name": "dinov2", "image_size": SIZE, "peft_type": "dora", "peft_rank": RANK}
    (hf / "config.json").write_text(json.dumps(config))
    options = {"timm_name": "vit_small_patch14_dinov2", "model_kwargs": ARCH}
    from_pkl = convert(tmp_path / "model.pkl", tmp_path / "a.ckpt", image_size=SIZE, **options)
    from_hf = convert(hf, tmp_path / "b.ckpt", **options)  # image size from config.json
    assert from_hf["hyper_parameters"] == from_pkl["hyper_parameters"]
    assert from_hf["hyper_parameters"]["backbone"]["pretrained"] is True
    assert from_hf["state_dict"].keys() == from_pkl["state_dict"].keys()
    assert all(torch.equal(from_hf["state_dict"][k], v) for k, v in from_pkl["state_dict"].items())


def test_unfitting_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    _their_file(tmp_path / "model.pkl")
    # Another width than the file's: a one-line error naming the file, the tensor and shapes.
    wrong = json.dumps({**ARCH, "embed_dim": 32})
    proc = _converter(
        tmp_path,
        str(tmp_path / "model.pkl"),
        str(tmp_path / "x.ckpt"),
        "--timm-name=vit_small_patch14_dinov2",
        f"--model-kwargs={wrong}",
    )
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"anomalyvfm-convert: error: {tmp_path / 'model.pkl'}: ")
    assert "does not fit" in first and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.ckpt").exists()

    options = {"timm_name": "vit_small_patch14_dinov2", "model_kwargs": ARCH}
    with pytest.raises(ValueError, match="holds a dinov2 model, not clip"):
        convert(tmp_path / "model.pkl", tmp_path / "x.ckpt", backbone="clip", **options)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a released AnomalyVFM model"):
        convert(tmp_path / "other.ckpt", tmp_path / "x.ckpt")
    (tmp_path / "broken.pkl").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="broken.pkl: cannot be read as a torch file"):
        convert(tmp_path / "broken.pkl", tmp_path / "x.ckpt")


# The recipes' adapter rank: a converted checkpoint evaluated with a recipe config keeps it.
RECIPE_RANK = 64
_ADAPTER_TENSOR = re.compile(r"\.(lora_[AB](_[qv])?|mag_[qv]|magnitude)$")


def _merged(
    backbone: dict[str, Tensor], rank: int, skip: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """The released backbone wrapper's frozen weights (``net.`` and their wrappers' ``layer.``
    stripped) with their DoRA updates merged in, as their modules compute them; modules in
    ``skip`` keep their own weight."""
    plain = {
        k[len("net.") :].replace(".layer.", "."): v
        for k, v in backbone.items()
        if k.startswith("net.") and not _ADAPTER_TENSOR.search(k)
    }
    for key in backbone:
        module = key[len("net.") : key.rfind(".")]
        if key.endswith(".lora_A_q"):  # fused qkv: q and v slices
            w_q, w_k, w_v = plain[f"{module}.weight"].chunk(3)
            q, v = (
                _dora(
                    w,
                    *(backbone[f"net.{module}.{n}_{s}"] for n in ("lora_A", "lora_B", "mag")),
                    1 / rank,
                )
                for w, s in ((w_q, "q"), (w_v, "v"))
            )
            plain[f"{module}.weight"] = torch.cat([q, w_k, v])
        elif key.endswith(".lora_A") and module not in skip:
            parts = (backbone[f"net.{module}.{n}"] for n in ("lora_A", "lora_B", "magnitude"))
            plain[f"{module}.weight"] = _dora(plain[f"{module}.weight"], *parts, 1 / rank)
    return plain


def _dora_release(
    state: dict[str, Tensor], wrapped: tuple[str, ...], gen: torch.Generator, rank: int
) -> dict[str, Tensor]:
    """A backbone wrapper's state as their code saves it after wrapping every linear whose name
    ends with one of ``wrapped`` in their DoRA module (weights under ``layer.``)."""
    out: dict[str, Tensor] = OrderedDict()
    modules = []
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        if module.endswith(wrapped):
            key = f"{module}.layer.{leaf}"
            if leaf == "weight":
                modules.append(module)
        out[f"net.{key}"] = value
    for module in modules:
        c_out, c_in = state[f"{module}.weight"].shape
        out[f"net.{module}.lora_A"] = torch.randn(rank, c_in, generator=gen) * 0.3
        out[f"net.{module}.lora_B"] = torch.randn(c_out, rank, generator=gen) * 0.3
        out[f"net.{module}.magnitude"] = torch.rand(c_out, generator=gen) + 0.5
    return out


def _save_hf(folder: Path, saved: dict[str, dict[str, Tensor]], config: dict) -> None:
    """The Hugging Face upload of hf_model.AnomalyVFM: model./decoder./predictor. tensors."""
    from safetensors.torch import save_file

    folder.mkdir()
    parts = (("model", "model_state_dict"), ("decoder", "decoder_state_dict"))
    flat = {
        f"{part}.{k}": v.contiguous()
        for part, key in (*parts, ("predictor", "predictor_state_dict"))
        for k, v in saved[key].items()
    }
    save_file(flat, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


def _perturbed(model: torch.nn.Module, gen: torch.Generator) -> dict[str, Tensor]:
    """``model``'s state with every weight, norms included, moved off its initial value."""
    return {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}


def _checkpoint_matches(ckpt: Path, saved: dict[str, dict[str, Tensor]]) -> AnomalyVFM:
    """The converted checkpoint holds the released decoder and head unchanged and loads into the
    model its options build (eval mode)."""
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp, state = loaded["hyper_parameters"], loaded["state_dict"]
    dec = saved["decoder_state_dict"]
    assert torch.equal(state["model.decoder.bottleneck.0.weight"], dec["bot.conv1.weight"])
    assert torch.equal(state["model.decoder.confidence_head.weight"], dec["final_conf.weight"])
    lin = saved["predictor_state_dict"]["lin.weight"]
    assert torch.equal(state["model.image_head.weight"], lin)
    task = AnomalyVFM(**{k: v for k, v in hp.items() if not k.startswith("_")})
    missing, unexpected = task.load_state_dict(state, strict=False)
    assert not unexpected and all(k not in state for k in missing)
    return task.eval()


def _radio_file(path: Path, rank: int) -> dict[str, dict[str, Tensor]]:
    """A RADIO v2.5 release (their torch.hub / radio_local layout) of ARCH's size."""
    gen = torch.Generator().manual_seed(0)
    d = ARCH["embed_dim"]

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen) * 0.1

    state: dict[str, Tensor] = OrderedDict(
        [
            ("model.patch_generator.embedder.weight", rand(d, 3 * 16 * 16)),
            ("model.patch_generator.cls_token.token", rand(8, d)),
            ("model.patch_generator.pos_embed", rand(1, 32 * 32, d)),
        ]
    )
    for i in range(ARCH["depth"]):
        pre = f"model.blocks.{i}."
        for name, shape in (
            ("norm1", (d, d)),
            ("norm2", (d, d)),
            ("mlp.fc1", (4 * d, d)),
            ("mlp.fc2", (d, 4 * d)),
            ("attn.qkv", (3 * d, d)),
            ("attn.proj", (d, d)),
        ):
            weight = rand(shape[0]) + 1 if name.startswith("norm") else rand(*shape)
            state[f"{pre}{name}.weight"], state[f"{pre}{name}.bias"] = weight, rand(shape[0])
    backbone = _dora_release(state, ("attn.proj",), gen, rank)
    backbone["net.summary_idxs"] = torch.tensor([0, 1, 2])
    # RADIO's input normalisation: OpenAI CLIP's mean and std, as timm's C-RADIO.
    backbone["net.input_conditioner.norm_mean"] = CLIP_MEAN.view(3, 1, 1).clone()
    backbone["net.input_conditioner.norm_std"] = CLIP_STD.view(3, 1, 1).clone()
    for i in range(ARCH["depth"]):  # their fused-qkv DoRA: q and v slices
        qkv = f"net.model.blocks.{i}.attn.qkv"
        backbone[f"{qkv}.layer.weight"] = backbone.pop(f"{qkv}.weight")
        backbone[f"{qkv}.layer.bias"] = backbone.pop(f"{qkv}.bias")
        for part in ("q", "v"):
            backbone[f"{qkv}.lora_A_{part}"] = rand(rank, d) * 3
            backbone[f"{qkv}.lora_B_{part}"] = rand(d, rank) * 3
            backbone[f"{qkv}.mag_{part}"] = torch.rand(d, generator=gen) + 0.5
    decoder, predictor = _head_tensors(gen, d, 3 * d)  # 3 summary tokens
    saved = {
        "model_state_dict": backbone,
        "decoder_state_dict": decoder,
        "predictor_state_dict": predictor,
    }
    torch.save(saved, path)
    return saved


def test_radio_release_converts_and_computes_their_outputs(tmp_path: Path) -> None:
    """RADIO v2.5: refused without --backbone-weights (timm's C-RADIO v3 weights are another
    model); with it, timm's RADIO architecture reads the released backbone, and the image head
    reads the first 3 of its 8 leading tokens."""
    saved = _radio_file(tmp_path / "radio.pkl", RANK)
    backbone = saved["model_state_dict"]
    options: dict = {"timm_name": "vit_large_patch16_radio_v3", "model_kwargs": ARCH}
    with pytest.raises(ValueError, match="radio: the released model's backbone is RADIO v2.5-L"):
        convert(tmp_path / "radio.pkl", tmp_path / "r.ckpt", image_size=64, **options)
    weights = tmp_path / "radio_backbone.pth"
    other = {**saved, "model_state_dict": dict(backbone)}
    other["model_state_dict"]["net.input_conditioner.norm_std"] = torch.ones(3, 1, 1)
    torch.save(other, tmp_path / "other.pkl")
    with pytest.raises(ValueError, match=r"other.pkl: its input normalisation std \[1.0, 1.0"):
        convert(
            tmp_path / "other.pkl",
            tmp_path / "o.ckpt",
            **options,
            image_size=64,
            weights_out=weights,
        )
    ckpt = convert(
        tmp_path / "radio.pkl", tmp_path / "r.ckpt", image_size=64, weights_out=weights, **options
    )
    hp = ckpt["hyper_parameters"]["backbone"]
    assert (hp["summary"], hp["summary_tokens"]) == ("prefix", 3)
    assert hp["model_kwargs"] == {**ARCH, "init_values": 0}
    task = _checkpoint_matches(tmp_path / "r.ckpt", saved)
    assert task.model.backbone.summary_dim == 3 * ARCH["embed_dim"]
    vit = timm.create_model(
        "vit_large_patch16_radio_v3",
        pretrained=True,
        img_size=64,
        pretrained_cfg_overlay={"file": str(weights)},
        **hp["model_kwargs"],
    )
    state = vit.state_dict()
    tokens = backbone["net.model.patch_generator.cls_token.token"]
    assert torch.equal(state["cls_token"][0], tokens[:1])
    assert torch.equal(state["reg_token"][0], tokens[1:])
    assert torch.equal(
        state["blocks.1.attn.qkv.weight"], backbone["net.model.blocks.1.attn.qkv.layer.weight"]
    )
    # Their forward: the DoRA-merged RADIO blocks; 8 leading tokens, the first 3 to the head.
    merged = {
        k[len("model.") :]: v
        for k, v in _merged(backbone, RANK).items()
        if k.startswith("model.blocks.")
    }
    vit.load_state_dict(merged, strict=False)
    vit.eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        tokens = vit.forward_features(task.model.backbone.normalize(images))
        ours = task.model(images)
    mask, score = _their_head(saved, tokens[:, 8:], tokens[:, :3].flatten(1))
    assert torch.allclose(ours.anomaly_logits, mask, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours.image_logits, score, atol=1e-4, rtol=1e-4)


def _recipe_overrides(model_kwargs: dict, size: int) -> list[str]:
    """A recipe config shrunk to the tiny model: its size options only, on the CPU."""
    return [
        f"--model.init_args.backbone.model_kwargs={json.dumps(model_kwargs)}",
        f"--data.init_args.image_size={size}",
        "--data.init_args.eval_mask_size=32",
        "--data.init_args.num_workers=0",
        "--trainer.accelerator=cpu",
        "--trainer.precision=32",
    ]


@pytest.mark.slow  # about 20 s: a tiny test run as a subprocess
def test_converted_radio_evaluates_with_the_radio_recipe(tmp_path: Path, mvtec_root: Path) -> None:
    _radio_file(tmp_path / "radio.pkl", RECIPE_RANK)
    out = tmp_path / "radio.ckpt"
    proc = _converter(
        tmp_path,
        str(tmp_path / "radio.pkl"),
        str(out),
        f"--model-kwargs={json.dumps(ARCH)}",
        "--image-size=64",
        f"--backbone-weights={tmp_path / 'radio_backbone.pth'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    kwargs = {**ARCH, "init_values": 0}
    recipe = f"--config={CONFIGS / 'anomalyvfm_radio.yaml'}"
    _evaluates(tmp_path, out, mvtec_root, recipe, *_recipe_overrides(kwargs, 64))


def _transformers_release(
    folder: Path, family: str, hf: torch.nn.Module, seed: int
) -> dict[str, dict[str, Tensor]]:
    """A CLIP or SigLIP 2 release in their Hugging Face upload: the transformers vision tower
    (random weights) whose q_proj, v_proj and out_proj their code wraps in DoRA (SigLIP 2's
    pooling head's out_proj included), their decoder and head, and config.json."""
    gen = torch.Generator().manual_seed(seed)
    state = _perturbed(hf, gen)
    backbone = _dora_release(state, ("q_proj", "v_proj", "out_proj"), gen, RECIPE_RANK)
    decoder, predictor = _head_tensors(gen, ARCH["embed_dim"], ARCH["embed_dim"])
    saved = {
        "model_state_dict": backbone,
        "decoder_state_dict": decoder,
        "predictor_state_dict": predictor,
    }
    size = hf.config.image_size if family == "clip" else 64
    config = {"model_name": family, "image_size": size, "peft_type": "dora"}
    _save_hf(folder, saved, {**config, "peft_rank": RECIPE_RANK})
    return saved


@pytest.mark.slow  # about 20 s: the converter and a tiny test run as subprocesses
def test_siglip2_release_converts_evaluates_and_computes_their_outputs(
    tmp_path: Path, mvtec_root: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    d = ARCH["embed_dim"]
    config = transformers.Siglip2VisionConfig(
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=ARCH["depth"],
        num_attention_heads=ARCH["num_heads"],
        num_patches=256,  # the real model's 16 x 16 position grid, resized to the 4 x 4 input
        patch_size=16,
    )
    torch.manual_seed(0)
    saved = _transformers_release(
        tmp_path / "hf", "siglip2", transformers.Siglip2VisionModel(config), 1
    )
    backbone = saved["model_state_dict"]
    assert "net.head.attention.out_proj.magnitude" in backbone  # wrapped, though never used
    out = tmp_path / "siglip2.ckpt"
    kwargs = {**ARCH, "mlp_ratio": 2.0}
    proc = _converter(
        tmp_path,
        str(tmp_path / "hf"),
        str(out),
        f"--model-kwargs={json.dumps(kwargs)}",
        f"--backbone-weights={tmp_path / 'siglip2_backbone.pth'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"dora rank {RECIPE_RANK}" in proc.stdout

    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    hp, state = ckpt["hyper_parameters"]["backbone"], ckpt["state_dict"]
    assert hp["name"] == "naflexvit_so400m_patch16_siglip.v2_webli"
    assert (hp["summary"], hp["norm"], ckpt["hyper_parameters"]["image_size"]) == ("head", True, 64)
    layer = "net.encoder.layers.1.self_attn"
    assert torch.equal(
        state["model.backbone.model.blocks.1.attn.qkv.lora_B.1"], backbone[f"{layer}.v_proj.lora_B"]
    )
    assert torch.equal(
        state["model.backbone.model.blocks.1.attn.proj.magnitude.0"],
        backbone[f"{layer}.out_proj.magnitude"],
    )
    assert not any("attn_pool" in k for k in state)  # the pooling head stays frozen
    task = _checkpoint_matches(out, saved)

    # Their forward: transformers' SigLIP 2 with the DoRA updates merged (the pooling head's
    # out_proj is read unadapted by nn.MultiheadAttention), fed the patchified image.
    reference = transformers.Siglip2VisionModel(config)
    merged = _merged(backbone, RECIPE_RANK, skip=("head.attention.out_proj",))
    reference.load_state_dict(merged)
    reference.eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    x = ((images - 0.5) / 0.5).reshape(2, 3, 4, 16, 4, 16).permute(0, 2, 4, 3, 5, 1)
    with torch.no_grad():
        ref = reference(
            pixel_values=x.reshape(2, 16, 16 * 16 * 3),
            pixel_attention_mask=torch.ones(2, 16, dtype=torch.long),
            spatial_shapes=torch.tensor([[4, 4], [4, 4]]),
        )
        ours = task.model(images)
    mask, score = _their_head(saved, ref.last_hidden_state, ref.pooler_output)
    assert torch.allclose(ours.anomaly_logits, mask, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours.image_logits, score, atol=1e-4, rtol=1e-4)

    recipe = f"--config={CONFIGS / 'anomalyvfm_siglip2.yaml'}"
    _evaluates(tmp_path, out, mvtec_root, recipe, *_recipe_overrides(kwargs, 64))


@pytest.mark.slow  # about 20 s: the converter and a tiny test run as subprocesses
def test_clip_release_converts_and_evaluates_with_the_clip_recipe(
    tmp_path: Path, mvtec_root: Path
) -> None:
    """The CLIP recipe names the model the converted checkpoint holds (QuickGELU, no final
    norm): testing it with that config needs only the tiny model's size."""
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(
        hidden_size=ARCH["embed_dim"],
        intermediate_size=4 * ARCH["embed_dim"],
        num_hidden_layers=ARCH["depth"],
        num_attention_heads=ARCH["num_heads"],
        image_size=SIZE,
        patch_size=14,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(0)
    saved = _transformers_release(tmp_path / "hf", "clip", transformers.CLIPVisionModel(config), 2)
    out = tmp_path / "clip.ckpt"
    proc = _converter(
        tmp_path,
        str(tmp_path / "hf"),
        str(out),
        f"--model-kwargs={json.dumps(ARCH)}",
        f"--backbone-weights={tmp_path / 'clip_backbone.pth'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    hp = torch.load(out, map_location="cpu", weights_only=True)["hyper_parameters"]["backbone"]
    assert hp["name"] == "vit_large_patch14_clip_quickgelu_336.openai"
    assert (hp["summary"], hp["norm"]) == ("cls", False)
    task = _checkpoint_matches(out, saved)

    # Their forward: transformers' CLIP tower with the DoRA updates merged; last_hidden_state
    # (no final norm), class token to the head.
    reference = transformers.CLIPVisionModel(config)
    reference.load_state_dict(_merged(saved["model_state_dict"], RECIPE_RANK))
    reference.eval()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        tokens = reference(pixel_values=(images - CLIP_MEAN) / CLIP_STD).last_hidden_state
        ours = task.model(images)
    mask, score = _their_head(saved, tokens[:, 1:], tokens[:, 0])
    assert torch.allclose(ours.anomaly_logits, mask, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ours.image_logits, score, atol=1e-4, rtol=1e-4)

    kwargs = {**ARCH, "num_classes": 0}
    recipe = f"--config={CONFIGS / 'anomalyvfm_clip.yaml'}"
    _evaluates(tmp_path, out, mvtec_root, recipe, *_recipe_overrides(kwargs, SIZE))
