"""Put a trained FER+ classifier inside the package: the model ``fer-predict`` uses when no ``--model`` is given.

    python -m modeling.hub.ship outputs/ferplus_run [--dest modeling/default_model] [--peers results/peers.json] \\
        [--recipe "MAE 20 epochs on the training faces, then ..."] [--compute "1 H200, 40 min"] [--max_mib 25]

``RUN_DIR`` is the output folder of ``run_finetune.py --do_predict`` on FER+. Into ``--dest`` (package data, see
:mod:`modeling.inference.shipped`) go its weights, ``config.json``, image processor and test confusion matrix, and
nothing else: no checkpoints, optimizer states or logs, and never a ``hardest_*.png`` grid, which shows dataset faces
(FER2013 images may not be redistributed). Weights above ``--max_mib`` are refused: they would go into every wheel. The
copy must load with ``AutoModelForImageClassification`` and give the run's logits bit for bit. Its card (``README.md``,
:mod:`modeling.hub.model_card`) holds the measured test results and adds the comparison with the ``fer`` package
measured by ``experiments/peers.py`` on the same faces with the same metrics code, the training data and compute, and
the limits (:mod:`modeling.hub.ship_card`), and keeps the starting point and recipe rows of the run's own card.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..cli import MissingFileError, UsageError, UserError, plain_text, require_model, run_main, user_errors
from ..inference.predictor import NotAnImageClassifierError, _check_is_image_classifier
from ..labels import FERPLUS_LABELS
from .model_card import write_model_card
from .ship_card import card_sections, run_card_facts, shown_path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = Path(__file__).resolve().parents[1] / "default_model"
DEFAULT_PEERS = ROOT / "results" / "peers.json"
PREVIOUS_FIELDS: tuple[str, ...] = ("name", "recipe", "test_samples", "test_accuracy", "test_balanced_accuracy")
WEIGHTS = "model.safetensors"
CONFUSION_MATRIX = "confusion_matrix_test.png"
SHIPPED_FILES: tuple[str, ...] = ("config.json", WEIGHTS, "preprocessor_config.json", CONFUSION_MATRIX)
CARD = "README.md"
RESULTS = "all_results.json"
REQUIRED_RESULTS: tuple[str, ...] = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1")
MODEL_NAME = "fer-mae-vit-ferplus"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def check_run_dir(run_dir: str | Path) -> dict[str, Any]:
    """The ``all_results.json`` of ``run_dir``, after checking that it holds a FER+ image classifier with test results.

    Raises :class:`~modeling.cli.UserError` (:class:`~modeling.cli.MissingFileError` for a missing file) naming the
    missing or wrong file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"{run_dir}: not a directory")
    for name in SHIPPED_FILES:
        if not (run_dir / name).is_file():
            sharded = name == WEIGHTS and any(run_dir.glob("*.safetensors.index.json"))
            hint = " (a sharded save: re-save it as one file)" if sharded else ""
            raise MissingFileError(f"{run_dir} lacks {name}{hint}: not the output of run_finetune.py --do_predict")
    with user_errors(NotAnImageClassifierError):  # a config.json of another kind of model
        config = _check_is_image_classifier(run_dir)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if tuple(labels) != FERPLUS_LABELS:
        raise UserError(
            f"{run_dir / 'config.json'}: classes {labels}, not the FER+ classes {list(FERPLUS_LABELS)}: "
            "the shipped model is a FER+ one (run_finetune.py --dataset_name ferplus)"
        )
    results = _read_json(run_dir / RESULTS, "the results of run_finetune.py")
    missing = [key for key in REQUIRED_RESULTS if key not in results]
    if missing:
        raise UserError(
            f"{run_dir / RESULTS} has no {', '.join(missing)}: no test results (run run_finetune.py with --do_predict)"
        )
    if not getattr(config, "grayscale_input", False):
        logger.warning(
            "%s has no grayscale_input: fer-predict will give this model colour faces (run_finetune.py sets it for "
            "FER+ since the flag exists; set it in config.json to convert them to gray as in training)",
            run_dir / "config.json",
        )
    return results


def read_peers(path: str | Path, results: Mapping[str, Any]) -> dict[str, Any]:
    """The peer benchmark (``experiments/peers.py`` JSON), checked to have scored the faces ``results`` scored."""
    path = Path(path)
    peers = _read_json(path, "the peer benchmark of experiments/peers.py")
    models = peers.get("models")
    if not isinstance(models, dict) or not models or not all("accuracy" in m for m in models.values()):
        raise UserError(f"{path}: no 'models' with an accuracy each: not the output of experiments/peers.py")
    faces = (peers.get("data") or {}).get("num_faces")
    ours = results.get("test_samples")
    if ours is None:
        logger.warning("The run did not record test_samples: cannot check it scored the %s faces of %s", faces, path)
    elif faces is not None and int(ours) != int(faces):
        raise UserError(
            f"the run scored {ours} test faces and {path} {faces}: the comparison needs the whole FER+ test split "
            "on the majority protocol (no --max_predict_samples)"
        )
    return peers


def read_previous(path: str | Path | None, results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The earlier default models of ``path`` (``{"models": [...]}``, newest first), for the card's comparison;
    ``[]`` without ``path``. Each must name its recipe and have scored the test faces ``results`` scored."""
    if path is None:
        return []
    path = Path(path)
    models = _read_json(path, "the earlier default models and their test results").get("models")
    if not isinstance(models, list):
        raise UserError(f"{path}: no 'models' list")
    ours = results.get("test_samples")
    for i, entry in enumerate(models):
        missing = [k for k in PREVIOUS_FIELDS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise UserError(f"{path}: models[{i}] lacks {', '.join(missing)}")
        if ours is not None and int(entry["test_samples"]) != int(ours):
            raise UserError(
                f"{path}: models[{i}] ({entry['name']}) scored {entry['test_samples']} test faces and this run "
                f"{ours}: not comparable"
            )
    return models


def _logits(model_dir: Path) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Logits ``[2, num_labels]`` of the model saved in ``model_dir`` on a fixed random input, and its loading info."""
    from transformers import AutoModelForImageClassification

    model, info = AutoModelForImageClassification.from_pretrained(str(model_dir), output_loading_info=True)
    cfg = model.config
    x = torch.randn(2, cfg.num_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return model.eval()(pixel_values=x).logits, info


def verify_copy(run_dir: Path, dest: Path) -> None:
    """Raises ``RuntimeError`` unless ``dest`` loads completely and gives the logits of ``run_dir`` exactly."""
    from transformers import AutoImageProcessor

    AutoImageProcessor.from_pretrained(str(dest))
    expected, _ = _logits(run_dir)
    got, info = _logits(dest)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise RuntimeError(f"{dest} loads with {bad}")
    if not torch.equal(got, expected):
        raise RuntimeError(f"{dest} gives logits {float((got - expected).abs().max()):.3g} away from {run_dir}'s")


def clear_dest(dest: Path) -> None:
    """Deletes what a previous :func:`ship` wrote in ``dest``: the shipped files and the card, nothing else."""
    for name in (*SHIPPED_FILES, CARD):
        (dest / name).unlink(missing_ok=True)


def ship(
    run_dir: str | Path,
    dest: str | Path = DEFAULT_DEST,
    peers: str | Path = DEFAULT_PEERS,
    recipe: str | None = None,
    compute: str | None = None,
    max_mib: float = 25.0,
    previous: str | Path | None = None,
) -> Path:
    """Copies the model of ``run_dir`` into ``dest``, checks the copy and writes its card; returns ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    if max_mib <= 0:
        raise UsageError(f"--max_mib must be positive, got {max_mib}")
    results = check_run_dir(run_dir)
    peer_results = read_peers(peers, results)
    previous_models = read_previous(previous, results)
    if dest.resolve() == run_dir.resolve():
        raise UsageError(f"--dest {dest} is the run folder itself")
    mib = (run_dir / WEIGHTS).stat().st_size / 2**20
    if mib > max_mib:
        raise UserError(
            f"{run_dir / WEIGHTS} is {mib:.1f} MiB, more than --max_mib {max_mib:g}: too large to ship in every wheel "
            "(a smaller model, or --max_mib if that is meant)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    clear_dest(dest)
    try:
        for name in SHIPPED_FILES:
            # a new file with the umask's mode (copy2 copied the run's mode: safetensors writes 0600)
            shutil.copyfile(run_dir / name, dest / name)
        verify_copy(run_dir, dest)
        config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
        pretraining, details = run_card_facts(run_dir)
        write_model_card(
            dest,
            results,
            sections=card_sections(results, peer_results, peers, config, recipe, compute, previous_models),
            dataset_name="ferplus",
            model_name=MODEL_NAME,
            model_dir=shown_path(dest),  # modeling/default_model in a checkout
            details={**details, "fine-tuning run": run_dir.resolve().name},
            pretraining=pretraining or "trained",  # "trained on FER+" when the run left no card to say how
            training_data="FER2013 faces with FER+ labels",
        )
    except Exception:
        clear_dest(dest)  # no half-shipped model, or one without its card, for default_model_dir() to find
        raise
    logger.info("Shipped %s (%.1f MiB) to %s", run_dir, mib, dest)
    return dest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m modeling.hub.ship", description=plain_text(__doc__.split("\n\n")[0]))
    p.add_argument("run_dir", help="Output folder of run_finetune.py --do_predict on FER+")
    p.add_argument("--dest", default=str(DEFAULT_DEST), help="Folder to ship to (default: modeling/default_model)")
    p.add_argument("--peers", default=str(DEFAULT_PEERS), help="Peer benchmark JSON of experiments/peers.py")
    p.add_argument("--recipe", default=None, help="The training recipe, one line of markdown for the card")
    p.add_argument("--compute", default=None, help="The compute used (hardware, time), for the card")
    p.add_argument("--max_mib", type=float, default=25.0, help="Refuse weights larger than this many MiB")
    p.add_argument(
        "--previous",
        default=None,
        help='JSON of the earlier default models and their test results ({"models": [...]}, e.g. '
        "results/shipped_models.json): one row each in the card's comparison",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    require_model("", args.run_dir)
    dest = ship(args.run_dir, args.dest, args.peers, args.recipe, args.compute, args.max_mib, args.previous)
    print(f"shipped {args.run_dir} to {dest}: {', '.join(SHIPPED_FILES)} and {CARD}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.hub.ship"))
