"""Low-rank adapters (LoRA, DoRA) inside the attention of every transformer block.

Two implementations:

* ``native`` (default): the reference's exact variant. In the fused ``qkv`` projection only the
  query and value slices are adapted (each with its own A/B pair), plus the output projection.
  The update is computed on activations (``B @ (A @ x)``), never by materialising merged weights.
* ``peft``: Hugging Face ``peft`` LoRA/DoRA on whole modules matched by name (the key slice of a
  fused qkv is adapted too). Useful for comparisons and for targets the native code lacks.

At initialisation ``B = 0``, so the adapted backbone equals the frozen one. The scale is
``alpha / rank`` (reference: rank 64, alpha 1, i.e. 1/64).

How to add an adapter target: list the attention submodule name in ``AdapterConfig.targets``
(native: it must be an ``nn.Linear``); patch embeddings are never matched because only modules
inside ``blocks.N.attn`` are considered.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anomalyvfm import options

AdapterType = Literal["dora", "lora", "none", "full"]


@dataclass
class AdapterConfig:
    """How the backbone is adapted.

    Args:
        type: ``dora`` (reference default), ``lora`` (paper text), ``none`` (frozen backbone,
            decoder and head only) or ``full`` (fine-tune every backbone weight).
        rank: rank r of the update.
        alpha: the update is scaled by alpha / rank (reference: 1, i.e. 1/64 at rank 64).
        targets: attention submodules adapted in every block.
        qkv_parts: which slices of a fused ``qkv`` projection are adapted (native backend).
        backend: ``native`` (exact reference variant) or ``peft``.
        dropout: dropout on the adapter input (peft backend only; the reference uses none).
        init_std: standard deviation of the random A initialisation (reference 0.01).
    """

    type: AdapterType = "dora"
    rank: int = 64
    alpha: float = 1.0
    targets: list[str] = field(default_factory=lambda: ["qkv", "proj"])
    qkv_parts: Literal["qv", "qkv"] = "qv"
    backend: Literal["native", "peft"] = "native"
    dropout: float = 0.0
    init_std: float = 0.01

    def __post_init__(self) -> None:
        options.one_of("model.adapter.type", self.type, get_args(AdapterType))
        options.positive_int("model.adapter.rank", self.rank)
        options.positive_number("model.adapter.alpha", self.alpha)
        options.one_of("model.adapter.qkv_parts", self.qkv_parts, ("qv", "qkv"))
        options.one_of("model.adapter.backend", self.backend, ("native", "peft"))
        options.in_unit_interval("model.adapter.dropout", self.dropout, high_open=True)
        options.non_negative_number("model.adapter.init_std", self.init_std)
        targets = list(self.targets)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(
                f"model.adapter.targets must be a non-empty list of module names; got {targets!r}"
            )


class LowRankLinear(nn.Module):
    """A frozen ``nn.Linear`` plus low-rank updates on chosen row slices of its output.

    Args:
        base: the frozen linear layer.
        slices: (start, stop) output-row ranges, each adapted with its own A/B pair.
        rank: rank of each update.
        alpha: scale numerator (scale = alpha / rank).
        dora: decompose into magnitude and direction (DoRA) instead of plain LoRA.
        init_std: std of the random A initialisation; B starts at zero.
    """

    def __init__(
        self,
        base: nn.Linear,
        slices: list[tuple[int, int]],
        rank: int,
        alpha: float,
        dora: bool,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.base = base
        self.slices = [(int(a), int(b)) for a, b in slices]
        self.rank = rank
        self.scaling = alpha / rank
        self.dora = dora
        d_in = base.in_features
        self.lora_A = nn.ParameterList(
            [nn.Parameter(torch.randn(rank, d_in) * init_std) for _ in self.slices]
        )
        self.lora_B = nn.ParameterList(
            [nn.Parameter(torch.zeros(b - a, rank)) for a, b in self.slices]
        )
        if dora:
            with torch.no_grad():
                norms = [base.weight[a:b].norm(dim=1).clone() for a, b in self.slices]
            self.magnitude = nn.ParameterList([nn.Parameter(n) for n in norms])

    @property
    def weight(self) -> Tensor:
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.base.weight, self.base.bias
        y = F.linear(x, weight, None if self.dora else bias)
        # One matmul for every A at once, then one small matmul per slice.
        z = F.linear(x, torch.cat(list(self.lora_A), 0))
        parts: list[Tensor] = []
        pos = 0
        for i, (a, b) in enumerate(self.slices):
            if a > pos:
                parts.append(self._plain(y[..., pos:a], bias, pos, a))
            delta = F.linear(z[..., i * self.rank : (i + 1) * self.rank], self.lora_B[i])
            part = y[..., a:b] + self.scaling * delta
            if self.dora:
                # ||W + s B A|| per output row: a (rows x in) product, independent of tokens.
                merged_norm = (weight[a:b] + self.scaling * self.lora_B[i] @ self.lora_A[i]).norm(
                    dim=1
                )
                part = part * (self.magnitude[i] / (merged_norm + 1e-8))
                if bias is not None:
                    part = part + bias[a:b]
            parts.append(part)
            pos = b
        if pos < y.shape[-1]:
            parts.append(self._plain(y[..., pos:], bias, pos, y.shape[-1]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function, with the updates in its weight.

        LoRA rows become ``W + s B A``; DoRA rows that, rescaled to the learnt magnitude
        (``m / (||W + s B A|| + 1e-8)`` per row, as :meth:`forward` does). The sums run in
        float64 and the result takes the base layer's dtype, so outputs match up to rounding.
        """
        base = self.base
        weight = base.weight.double().clone()
        for i, (a, b) in enumerate(self.slices):
            rows = weight[a:b] + self.scaling * self.lora_B[i].double() @ self.lora_A[i].double()
            if self.dora:
                rows = rows * (self.magnitude[i].double() / (rows.norm(dim=1) + 1e-8))[:, None]
            weight[a:b] = rows
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
        out = out.to(device=base.weight.device, dtype=base.weight.dtype)
        out.weight.copy_(weight.to(base.weight.dtype))
        if base.bias is not None:
            out.bias.copy_(base.bias)
        return out.requires_grad_(False)

    def _plain(self, y: Tensor, bias: Tensor | None, a: int, b: int) -> Tensor:
        # Unadapted rows: DoRA computed y without bias, so add it back here.
        if self.dora and bias is not None:
            return y + bias[a:b]
        return y


def apply_adapters(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Freezes ``model`` and inserts adapters in place (returns the model for chaining).

    Raises:
        ValueError: no block attention module matched ``config.targets``.
    """
    if config.type == "full":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    if config.type == "none":
        return model
    if config.backend == "peft":
        return _apply_peft(model, config)
    matched = 0
    for name, module in list(model.named_modules()):
        if not _is_block_attention(name):
            continue
        for target in config.targets:
            child = getattr(module, target, None)
            if child is None:
                continue
            if not isinstance(child, nn.Linear):
                raise ValueError(f"adapter target {name}.{target} is not an nn.Linear")
            setattr(module, target, _wrap(child, target, config))
            matched += 1
    if matched == 0:
        raise ValueError(
            f"adapter.targets={config.targets} matched no attention module inside the blocks "
            "(expected names like blocks.0.attn.qkv); check the backbone or use adapter.type=full"
        )
    return model


def merge_adapters_into(model: nn.Module) -> int:
    """Folds every adapter of ``model`` (native or peft) into plain layers, in place.

    Native :class:`LowRankLinear` layers are replaced by :meth:`LowRankLinear.merged`; peft
    LoRA/DoRA layers are merged by peft and replaced by their base layer. Afterwards ``model``
    holds no adapter code. Returns the number of layers merged.

    Raises:
        ValueError: a peft adapter layer that is not a merged ``nn.Linear`` afterwards.
    """
    merged = 0
    for _, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LowRankLinear):
                setattr(parent, child_name, child.merged())
                merged += 1
            elif _is_peft_lora(child):
                peft_layer: Any = child
                peft_layer.merge(safe_merge=False)
                base = peft_layer.get_base_layer()
                if not isinstance(base, nn.Linear):
                    raise ValueError(f"cannot merge peft adapter on {type(base).__name__}")
                setattr(parent, child_name, base)
                merged += 1
    return merged


def _is_peft_lora(module: nn.Module) -> bool:
    # peft is imported only when it is already loaded: a model without peft layers never needs it.
    lora = sys.modules.get("peft.tuners.lora.layer")
    return lora is not None and isinstance(module, lora.LoraLayer)


def _wrap(layer: nn.Linear, target: str, config: AdapterConfig) -> LowRankLinear:
    out = layer.out_features
    if target == "qkv" and config.qkv_parts == "qv":
        if out % 3:
            raise ValueError(f"fused qkv projection has {out} outputs, not a multiple of 3")
        d = out // 3
        slices = [(0, d), (2 * d, 3 * d)]
    else:
        slices = [(0, out)]
    return LowRankLinear(
        layer, slices, config.rank, config.alpha, config.type == "dora", config.init_std
    )


def _apply_peft(model: nn.Module, config: AdapterConfig) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    targets = "|".join(re.escape(t) for t in config.targets)
    peft_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft uses it as a float
        lora_dropout=config.dropout,
        use_dora=config.type == "dora",
        target_modules=rf".*blocks\.\d+\.attn\.({targets})",
    )
    model = inject_adapter_in_model(peft_config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    # peft initialises A with Kaiming; keep the configured reference std for comparability.
    for name, param in model.named_parameters():
        if name.endswith("lora_A.default.weight"):
            with torch.no_grad():
                param.normal_(0.0, config.init_std)
    return model


def _is_block_attention(name: str) -> bool:
    return re.fullmatch(r"(.*\.)?blocks\.\d+\.attn", name) is not None
