"""A saved ``ViTForImageClassification`` run in plain torch, without importing transformers' model code.

``fer-predict`` is a process that starts, classifies some faces and exits. Importing transformers' model stack pulls
in ``torch._dynamo``, torchvision and scipy: measured on a 2-core AVX2-only EPYC, 7 of the 10 s that a run spent
before its first face (``import torch`` itself: 3 s). This module reads a local checkpoint as ``save_pretrained``
writes it (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) with ``json`` and ``safetensors``
and runs the arithmetic of ``ViTForImageClassification`` in eval mode: patch convolution, [CLS] token and position
embeddings, pre-norm blocks (LayerNorm, scaled-dot-product attention, residual; LayerNorm, MLP, residual), a final
LayerNorm and the linear head on the [CLS] token (Dosovitskiy et al. 2021).

One difference in form: the query, key and value projections run as one matmul with their weights concatenated, one
call instead of three. In float32 that changes at most the order of the sums (the logits of the ViT-S preset and of
the shipped model came out bit-identical); in int8 dynamic quantization
(``modeling.inference.predictor.quantize_linear_int8``) the three share their input, hence its quantization, and keep
their per-channel weight scales, so the integer products are the same and one activation quantization replaces three
(logits equal to transformers' to 2e-7). ``tests/test_vit_runtime.py`` compares the logits with transformers' on
several configurations.

It covers the checkpoints this package writes and other plain ViT classifiers. For anything else (a Hub id, another
architecture, an activation or option it does not implement, weights in another layout or dtype)
:func:`why_not_plain` gives the reason and callers load through transformers (``FERPredictor(runtime="auto")``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE, WEIGHTS_FILE, PROCESSOR_FILE = "config.json", "model.safetensors", "preprocessor_config.json"
ARCHITECTURE = "ViTForImageClassification"
PROCESSOR_TYPES = ("ViTImageProcessor", "ViTImageProcessorFast")
# What FERPredictor reads from the image processor; a file without one of them leaves a class default to know.
PROCESSOR_KEYS = ("do_resize", "size", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
BILINEAR, BICUBIC = 2, 3  # PIL.Image codes; FERPredictor.preprocess implements both (torch's antialiased kernels)
RESAMPLE_MODES = {BILINEAR: "bilinear", BICUBIC: "bicubic"}
# transformers' ACT2FN["gelu"] is GELUActivation: torch's exact (erf) GELU.
ACTIVATIONS = {"gelu": F.gelu}


def as_pair(value: Any) -> tuple[int, int] | None:
    """``(h, w)`` from a ViT config's ``image_size`` or ``patch_size`` (an int or a pair of ints), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


@dataclass
class PlainSpec:
    """What a predictor needs from a checkpoint, read without transformers: its config (attributes as in
    ``ViTConfig``, ``id2label`` with int keys) and its image processor's settings (attributes as in
    ``ViTImageProcessor``)."""

    path: Path
    config: SimpleNamespace
    processor: SimpleNamespace


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def expected_weights(config: SimpleNamespace) -> dict[str, tuple[int, ...]]:
    """The tensors (name -> shape) of a ``ViTForImageClassification`` checkpoint with this config, in the layout
    ``save_pretrained`` writes (``vit.encoder.layer.N.attention.attention.query.weight`` ...)."""
    d, m, c = config.hidden_size, config.intermediate_size, config.num_channels
    (ph, pw), (h, w) = config.patch_size, config.image_size
    tokens = (h // ph) * (w // pw) + 1
    qkv = d if config.qkv_bias else None
    shapes: dict[str, tuple[int, ...]] = {
        "vit.embeddings.cls_token": (1, 1, d),
        "vit.embeddings.position_embeddings": (1, tokens, d),
        "vit.embeddings.patch_embeddings.projection.weight": (d, c, ph, pw),
        "vit.embeddings.patch_embeddings.projection.bias": (d,),
        "vit.layernorm.weight": (d,),
        "vit.layernorm.bias": (d,),
        "classifier.weight": (config.num_labels, d),
        "classifier.bias": (config.num_labels,),
    }
    for i in range(config.num_hidden_layers):
        p = f"vit.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes[f"{p}attention.attention.{name}.weight"] = (d, d)
            if qkv:
                shapes[f"{p}attention.attention.{name}.bias"] = (qkv,)
        shapes.update({
            f"{p}attention.output.dense.weight": (d, d), f"{p}attention.output.dense.bias": (d,),
            f"{p}intermediate.dense.weight": (m, d), f"{p}intermediate.dense.bias": (m,),
            f"{p}output.dense.weight": (d, m), f"{p}output.dense.bias": (d,),
            f"{p}layernorm_before.weight": (d,), f"{p}layernorm_before.bias": (d,),
            f"{p}layernorm_after.weight": (d,), f"{p}layernorm_after.bias": (d,),
        })  # fmt: skip
    return shapes


def _config_problem(raw: dict) -> str | None:
    """Why this config is not one :class:`PlainViTClassifier` implements, or None."""
    if raw.get("model_type") != "vit":
        return f"model_type is {raw.get('model_type')!r}, not 'vit'"
    if list(raw.get("architectures") or []) != [ARCHITECTURE]:
        return f"architectures is {raw.get('architectures')!r}, not [{ARCHITECTURE!r}]"
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "id2label"):
        if key not in raw:
            return f"config.json has no {key!r}"
    if raw.get("hidden_act", "gelu") not in ACTIVATIONS:
        return f"activation {raw.get('hidden_act')!r} is not implemented here (only {sorted(ACTIVATIONS)})"
    heads, width = raw["num_attention_heads"], raw["hidden_size"]
    if width % heads or raw.get("head_dim", width // heads) != width // heads:
        return f"{heads} heads do not split {width} channels evenly"
    if as_pair(raw.get("image_size", 224)) is None or as_pair(raw.get("patch_size", 16)) is None:
        return "image_size or patch_size is neither an int nor a pair of ints"
    if not raw["id2label"]:
        return "no classes (id2label is empty)"
    return None


def _config(raw: dict) -> SimpleNamespace:
    id2label = {int(k): str(v) for k, v in raw["id2label"].items()}
    return SimpleNamespace(
        model_type="vit",
        hidden_size=int(raw["hidden_size"]),
        num_hidden_layers=int(raw["num_hidden_layers"]),
        num_attention_heads=int(raw["num_attention_heads"]),
        intermediate_size=int(raw["intermediate_size"]),
        hidden_act=raw.get("hidden_act", "gelu"),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),  # ViTConfig's defaults
        image_size=as_pair(raw.get("image_size", 224)),
        patch_size=as_pair(raw.get("patch_size", 16)),
        num_channels=int(raw.get("num_channels", 3)),
        qkv_bias=bool(raw.get("qkv_bias", True)),
        id2label=id2label,
        num_labels=len(id2label),
        grayscale_input=bool(raw.get("grayscale_input", False)),
    )


def why_not_plain(model: str | Path) -> str | None:
    """None when ``model`` is a local checkpoint :func:`load_plain_spec` and :func:`load_plain_vit` can run exactly;
    otherwise the reason, for the log (callers then load through transformers)."""
    found = inspect_plain(model)
    return found if isinstance(found, str) else None


def inspect_plain(model: str | Path) -> PlainSpec | str:
    """The checkpoint's :class:`PlainSpec` where this module can run it exactly, else the reason why not (see
    :func:`why_not_plain`). Reads the two JSON files and the weights' header once, no weights."""
    path = Path(model)
    if not path.is_dir():
        return "not a local directory (a Hub id loads through transformers)"
    for name in (CONFIG_FILE, WEIGHTS_FILE, PROCESSOR_FILE):
        if not (path / name).is_file():
            return f"no {name}"
    try:
        raw, proc = _read_json(path / CONFIG_FILE), _read_json(path / PROCESSOR_FILE)
    except ValueError as err:
        return str(err)
    if problem := _config_problem(raw):
        return problem
    if proc.get("image_processor_type") not in PROCESSOR_TYPES:
        return f"image processor {proc.get('image_processor_type')!r}, not one of {PROCESSOR_TYPES}"
    if missing := [k for k in PROCESSOR_KEYS if k not in proc]:
        return f"{PROCESSOR_FILE} leaves {missing} to the class defaults"
    if proc.get("resample", BILINEAR) not in RESAMPLE_MODES or proc.get("do_center_crop"):
        return "the image processor resamples other than bilinear or bicubic, or crops"
    try:
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS_FILE), "pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a damaged header
        return f"{WEIGHTS_FILE} cannot be read ({err})"
    expected = expected_weights(_config(raw))
    if set(found) != set(expected):
        extra, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
        return f"{WEIGHTS_FILE} is not in the layout expected: unexpected {extra[:3]}, missing {missing[:3]}"
    for key, shape in expected.items():
        if found[key] != (shape, "F32"):
            return f"{WEIGHTS_FILE}: {key} is {found[key]}, expected {shape} float32"
    processor = SimpleNamespace(
        **{k: proc[k] for k in PROCESSOR_KEYS}, resample=proc.get("resample", BILINEAR), do_center_crop=False
    )
    return PlainSpec(path, _config(raw), processor)


def load_plain_spec(model: str | Path) -> PlainSpec:
    """The config and image-processor settings of a checkpoint :func:`why_not_plain` accepts."""
    found = inspect_plain(model)
    if isinstance(found, str):
        raise ValueError(f"{model}: cannot run without transformers: {found}")
    return found


class _Block(nn.Module):
    def __init__(self, cfg: SimpleNamespace):
        super().__init__()
        d = cfg.hidden_size
        self.heads, self.head_dim = cfg.num_attention_heads, d // cfg.num_attention_heads
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.qkv = nn.Linear(d, 3 * d, bias=cfg.qkv_bias)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(d, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, d)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class PlainViTClassifier(nn.Module):
    """``ViTForImageClassification``'s inference forward pass; ``forward(pixel_values)`` returns the logits."""

    def __init__(self, config: SimpleNamespace):
        super().__init__()
        d, (ph, pw), (h, w) = config.hidden_size, config.patch_size, config.image_size
        self.config, self.num_labels, self.image_size = config, config.num_labels, (h, w)
        self.patch = nn.Conv2d(config.num_channels, d, kernel_size=(ph, pw), stride=(ph, pw))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, (h // ph) * (w // pw) + 1, d))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(d, config.num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if tuple(pixel_values.shape[-2:]) != self.image_size or pixel_values.shape[1] != self.patch.in_channels:
            raise ValueError(
                f"pixel_values of shape {tuple(pixel_values.shape)}; the model takes "
                f"[N, {self.patch.in_channels}, {self.image_size[0]}, {self.image_size[1]}]"
            )
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(len(x), -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.norm(x)[:, 0])

    def load_checkpoint(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copies the tensors of a checkpoint in transformers' layout (:func:`expected_weights`) into the modules."""
        own: dict[str, torch.Tensor] = {
            "cls_token": tensors["vit.embeddings.cls_token"],
            "pos_embed": tensors["vit.embeddings.position_embeddings"],
            "patch.weight": tensors["vit.embeddings.patch_embeddings.projection.weight"],
            "patch.bias": tensors["vit.embeddings.patch_embeddings.projection.bias"],
            "norm.weight": tensors["vit.layernorm.weight"],
            "norm.bias": tensors["vit.layernorm.bias"],
            "classifier.weight": tensors["classifier.weight"],
            "classifier.bias": tensors["classifier.bias"],
        }
        renames = {
            "proj": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense",
            "norm1": "layernorm_before", "norm2": "layernorm_after",
        }  # fmt: skip
        for i in range(len(self.blocks)):
            p = f"vit.encoder.layer.{i}."
            for kind in ("weight", "bias") if self.config.qkv_bias else ("weight",):
                own[f"blocks.{i}.qkv.{kind}"] = torch.cat(
                    [tensors[f"{p}attention.attention.{n}.{kind}"] for n in ("query", "key", "value")]
                )
            for mine, theirs in renames.items():
                for kind in ("weight", "bias"):
                    own[f"blocks.{i}.{mine}.{kind}"] = tensors[f"{p}{theirs}.{kind}"]
        self.load_state_dict(own, strict=True)


def load_plain_vit(model: str | Path, spec: PlainSpec | None = None) -> PlainViTClassifier:
    """The classifier of a checkpoint :func:`why_not_plain` accepts, float32, in eval mode."""
    from safetensors.torch import load_file

    spec = spec or load_plain_spec(model)
    # Built on the CPU, initialised and then overwritten: a few ms per million weights, where building on the meta
    # device and calling to_empty() imports sympy through torch's symbolic shapes (1.3 s, measured).
    module = PlainViTClassifier(spec.config)
    module.load_checkpoint(load_file(str(Path(model) / WEIGHTS_FILE)))
    return module.eval()
