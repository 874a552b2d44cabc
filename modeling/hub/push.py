"""Upload a saved model directory to the Hugging Face Hub.

    python -m modeling.hub.push MODEL_DIR user/fer-vit-base [--private] [--commit_message "..."]

Uploads the safetensors weights, ``config.json``, the image processor, the model card
(``README.md``) and confusion-matrix images; never checkpoints, optimizer states, logs or
evaluation grids of dataset images (whose licences forbid redistribution). The token comes
from ``hf auth login`` or ``HF_TOKEN`` through huggingface_hub and is never printed or logged.
``HF_ENDPOINT`` points the upload at another Hub-compatible server.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import MissingFileError, plain_text, require_model, run_main

logger = logging.getLogger(__name__)

UPLOAD_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "README.md",
    "confusion_matrix*.png",
)
REQUIRED_FILES: tuple[str, ...] = ("config.json", "preprocessor_config.json", "README.md")


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` after checking it holds safetensors weights, config, image processor and card.

    Raises :class:`~modeling.cli.MissingFileError` (a ``FileNotFoundError``) naming what is missing.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingFileError(f"Model directory not found: {model_dir}")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        hint = " (write it with modeling.hub.model_card.write_model_card)" if "README.md" in missing else ""
        raise MissingFileError(f"{model_dir} lacks {', '.join(missing)}{hint}")
    if not any(model_dir.glob("*.safetensors")):
        raise MissingFileError(f"{model_dir} holds no *.safetensors weights; re-save the model with save_pretrained")
    return model_dir


def push_model_dir(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str = "Upload FER model",
    allow_patterns: Sequence[str] = UPLOAD_PATTERNS,
    token: str | None = None,
) -> str:
    """Creates ``repo_id`` (if needed) and uploads the model files of ``model_dir``; returns the commit URL.

    ``token=None`` lets huggingface_hub find it (``HF_TOKEN`` or the saved login).
    """
    from huggingface_hub import HfApi

    model_dir = check_model_dir(model_dir)
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    logger.info("Uploading %s to %s", model_dir, repo_url)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=model_dir,
        repo_type="model",
        commit_message=commit_message,
        allow_patterns=list(allow_patterns),
        ignore_patterns=["*/*"],  # top-level files only: no checkpoint-*/, runs/ or other subfolders
    )
    return str(info.commit_url)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    p = argparse.ArgumentParser(prog="python -m modeling.hub.push", description=plain_text(__doc__.split("\n\n")[0]))
    p.add_argument("model_dir", help="Saved model directory (save_pretrained output with README.md)")
    p.add_argument("repo_id", help="Hub repository, e.g. user/fer-vit-base")
    p.add_argument("--private", action="store_true", help="Create the repository as private")
    p.add_argument("--commit_message", default="Upload FER model")
    args = p.parse_args(argv)
    require_model("", args.model_dir)
    url = push_model_dir(args.model_dir, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"pushed {args.model_dir} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.hub.push"))
