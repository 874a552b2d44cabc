"""Recipes are data: JSON files in ``configs/`` parsed by ``HfArgumentParser``.

A recipe may carry documentation in keys that start with ``_`` (``"_comment"``); they are
dropped before parsing. Any other unknown key is an error, so a typo cannot pass silently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's arguments, without its ``_``-prefixed documentation keys."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a JSON object of argument names to values")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def parse_script_args(parser: HfArgumentParser, argv: Sequence[str]) -> tuple[Any, ...]:
    """A JSON recipe as the sole argument (optionally followed by ``--key value`` overrides), or flags."""
    argv = list(argv)
    if argv and argv[0].endswith(".json"):
        recipe = load_recipe(argv[0])
        recipe.update(_flags_to_dict(argv[1:]))  # later flags override the recipe's values
        return parser.parse_dict(recipe)
    return parser.parse_args_into_dataclasses(args=argv)


def _flags_to_dict(flags: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(flags):
        key = flags[i]
        if not key.startswith("--"):
            raise ValueError(f"Expected --name after the recipe, got {key!r}")
        if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            value: Any = flags[i + 1]
            i += 2
        else:
            value, i = "true", i + 1
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            pass
        out[key[2:]] = value
    return out


def parse_overrides(text: str | None) -> dict:
    """``'a=1,b=0.5,c=true'`` -> ``{'a': 1, 'b': 0.5, 'c': True}``."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        if not _:
            raise ValueError(f"config_overrides item {item!r} is not key=value")
        out[key.strip()] = json.loads(value.strip().lower() if value.strip().lower() in ("true", "false") else value)
    return out
