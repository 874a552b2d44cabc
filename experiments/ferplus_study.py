#!/usr/bin/env python
"""The paper's question on real FER+ data: does MAE pretraining make a vanilla ViT a strong FER model?

Runs, with the package's own scripts and the recipes in configs/study_ferplus_*.json:
  MAE pretraining on the FER+ train faces (labels unused), shared by arms B to E;
  A: supervised from scratch; B: MAE + plain fine-tuning; C: B + the paper's regular augmentation;
  D: B + the MAE fine-tuning recipe; E: B with LoRA.
Each arm selects its model on the validation split and scores the test split once. Finished runs are
skipped and interrupted ones resume from their last checkpoint, so the command can simply be run again.

    python experiments/ferplus_study.py                      # full study, reads ../shared/data/ferplus
    python experiments/ferplus_study.py --parallel 2         # two runs at a time, one thread each
    python experiments/ferplus_study.py --tiny --work_dir /tmp/study  # seconds-long smoke run on mini/
    python experiments/ferplus_study.py --gpu                # the larger variant: small preset, 112 px, one GPU

Writes results/ferplus_study.json and results/ferplus_study.md (with --tiny: into the work dir; with --gpu:
results/ferplus_study_gpu.*), and the best arm's card (chosen on validation) into model_cards/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling.hub.recreate import TINY_MAE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_FERPLUS = ROOT.parent / "shared" / "data" / "ferplus"
ARMS = {
    "A_scratch": "A: supervised from scratch",
    "B_mae": "B: MAE-pretrained, plain fine-tuning",
    "C_mae_regular": "C: B + regular augmentation",
    "D_mae_recipe": "D: B + MAE fine-tuning recipe",
    "E_mae_lora": "E: B with LoRA (r=8)",
}
# FER+ majority test split: 1,083 of 3,137 faces are neutral (../shared/data/README.md).
MAJORITY_BASELINE = 1083 / 3137
# --gpu: the larger variant of item 5 (one GPU, bf16), the same recipes with these flags appended.
GPU_COMMON = ["--model_size", "small", "--config_overrides", "", "--image_size", "112", "--patch_size", "16",
              "--use_cpu", "false", "--bf16", "true", "--dataloader_num_workers", "12"]  # fmt: skip
GPU_MAE = [*GPU_COMMON, "--num_train_epochs", "40", "--warmup_epochs", "4", "--per_device_train_batch_size", "512"]
GPU_FINETUNE = [*GPU_COMMON, "--num_train_epochs", "10", "--warmup_epochs", "1", "--per_device_train_batch_size",
                "256", "--per_device_eval_batch_size", "512"]  # fmt: skip
TINY_MODEL = TINY_MAE  # --tiny: 2-layer width-32 MAE (its encoder part for the scratch arm)


def run(cmd: list[str], log: Path, threads: int) -> float:
    """Runs ``cmd`` in the repository root, appending to ``log``; returns the wall seconds; raises on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed with exit code {proc.returncode}; see {log}")
    return time.perf_counter() - start


def add_time(run_dir: Path, seconds: float) -> float:
    """Accumulates wall time across resumed attempts in ``study_time.json``."""
    path = run_dir / "study_time.json"
    total = (json.loads(path.read_text())["seconds"] if path.exists() else 0.0) + seconds
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": total}))
    return total


def unpack_ferplus(dest: Path) -> Path:
    """The packed shared FER+ data written back into the official layout (not part of the repository)."""
    if (dest / "FER2013Test" / "label.csv").exists():
        return dest
    sys.path.insert(0, str(ROOT))
    from modeling.data.ferplus_layout import unpack_official

    unpack_official(SHARED_FERPLUS, dest)  # checks the PNG and label counts of every split
    return dest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", help="Official FER+ layout; default: unpack ../shared/data/ferplus")
    parser.add_argument("--work_dir", default=None, help="Default: outputs/study_ferplus (--gpu: ..._gpu)")
    parser.add_argument("--results_dir", default=None, help="Default: results/ (with --tiny: the work dir)")
    parser.add_argument("--seeds", default="0,1", help="Seeds of arms A and B (the others use the first)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--parallel", type=int, default=1, help="Fine-tuning runs at a time")
    parser.add_argument("--tiny", action="store_true", help="Smoke run: FER+ mini/, 2-layer width-32 models, 2 steps")
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="The larger variant on one GPU: small preset, 112 px, patch 16, bf16, MAE 40 epochs, arms 10 epochs; "
        "writes results/ferplus_study_gpu.{json,md}",
    )
    args = parser.parse_args(argv)

    work = Path(args.work_dir or ROOT / "outputs" / ("study_ferplus_gpu" if args.gpu else "study_ferplus"))
    work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.results_dir or (work if args.tiny else ROOT / "results"))
    stem = "ferplus_study_gpu" if args.gpu else "ferplus_study"
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif args.tiny:
        data_dir = SHARED_FERPLUS / "mini"
    else:
        data_dir = unpack_ferplus(work / "ferplus_official")
    cache = work / "cache"
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    log = work / "study.log"
    tiny_flags = [
        "--max_steps",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
    ]

    # 1. One MAE pretraining, shared by B to E.
    mae_dir = work / "mae"
    if not (mae_dir / "model.safetensors").exists():
        cmd = [sys.executable, "run_mae.py", "configs/study_ferplus_mae.json", "--data_dir", str(data_dir),
               "--cache_dir", str(cache), "--output_dir", str(mae_dir)]  # fmt: skip
        if args.tiny:
            cmd += [
                "--config_overrides",
                TINY_MODEL,
                "--max_steps",
                "2",
                "--save_strategy",
                "no",
                "--eval_strategy",
                "no",
            ]
        if args.gpu:
            cmd += GPU_MAE
        add_time(mae_dir, run(cmd, log, os.cpu_count() or 2))
        (work / "linear_probe.json").unlink(missing_ok=True)  # a probe of an earlier MAE no longer applies
    mae_results = json.loads((mae_dir / "all_results.json").read_text())
    if not (mae_dir / "study_time.json").exists():  # pretrained outside this script: the Trainer's own clock
        add_time(mae_dir, mae_results["train_runtime"])

    # 2. Linear probe on the validation split: MAE features vs a random twin vs raw pixels (a diagnostic).
    probe_path = work / "linear_probe.json"
    if not probe_path.exists():
        probe_path.write_text(json.dumps(linear_probe_report(mae_dir, data_dir, cache), indent=2))
    probe = json.loads(probe_path.read_text())

    # 3. Fine-tuning arms.
    jobs = []
    for arm in args.arms.split(","):
        for seed in seeds if arm in ("A_scratch", "B_mae") else seeds[:1]:
            out = work / f"{arm}_seed{seed}"
            cmd = [sys.executable, "run_finetune.py", f"configs/study_ferplus_{arm}.json", "--data_dir", str(data_dir),
                   "--cache_dir", str(cache), "--output_dir", str(out), "--seed", str(seed)]  # fmt: skip
            if arm != "A_scratch":
                cmd += ["--model_name_or_path", str(mae_dir)]
            elif args.tiny:
                cmd += ["--config_overrides", TINY_MODEL.split(",decoder")[0]]
            if args.gpu:
                cmd += GPU_FINETUNE
            if args.tiny:
                cmd += tiny_flags
            jobs.append((arm, seed, out, cmd))

    def do(job):
        arm, seed, out, cmd = job
        done = out / "all_results.json"
        if done.exists() and "test_accuracy" in json.loads(done.read_text()):
            return
        add_time(out, run(cmd, work / f"{arm}_seed{seed}.log", threads))

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(do, jobs))

    # 4. Collect.
    rows = []
    for arm, seed, out, _ in jobs:
        r = json.loads((out / "all_results.json").read_text())
        rows.append(
            {
                **selection(out),
                "arm": arm,
                "description": ARMS[arm],
                "seed": seed,
                "test_accuracy": r["test_accuracy"],
                "test_balanced_accuracy": r["test_balanced_accuracy"],
                "test_macro_f1": r["test_macro_f1"],
                "val_accuracy": r.get("eval_accuracy"),
                "train_minutes": json.loads((out / "study_time.json").read_text())["seconds"] / 60,
                "output_dir": str(out),
            }
        )
    summary = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        accs = [r["test_accuracy"] for r in rows if r["arm"] == arm]
        summary[arm] = {
            "mean_test_accuracy": statistics.fmean(accs),
            "spread": max(accs) - min(accs),
            "seeds": [r["seed"] for r in rows if r["arm"] == arm],
        }
    report = {
        "dataset": "FER+ (majority protocol), 25,045 / 3,191 / 3,137 train / validation / test"
        if not args.tiny
        else "FER+ mini/",
        "majority_class_baseline_test_accuracy": MAJORITY_BASELINE,
        "mae_pretraining": {
            "eval_start_loss": mae_results.get("eval_start_loss"),
            "eval_loss": mae_results.get("eval_loss"),
            "train_runtime_minutes": json.loads((mae_dir / "study_time.json").read_text())["seconds"] / 60,
        },
        "linear_probe_validation": probe,
        "runs": rows,
        "summary": summary,
        "machine": machine(args.parallel),
        "recipes": "configs/study_ferplus_*.json",
    }
    best = max(rows, key=lambda r: r["val_accuracy"] or 0.0)  # chosen on validation, never on test
    report["best_by_validation"] = {"arm": best["arm"], "seed": best["seed"]}
    if not args.tiny:
        write_best_card(best, report, "vit-small-mae-ferplus-study-gpu" if args.gpu else "vit-tiny-mae-ferplus-study")
    (results_dir / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (results_dir / f"{stem}.md").write_text(markdown(report))
    print(json.dumps(summary, indent=2))
    return report


def selection(out: Path) -> dict:
    """Which checkpoint the run selected, from its ``trainer_state.json``: the validation accuracy after each
    evaluation, the selected step and whether it was the last one (an audit trail for the best-model restore)."""
    state = json.loads((out / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_accuracy" in e]
    best = state.get("best_model_checkpoint") or ""
    best_step = int(best.rsplit("-", 1)[1]) if "checkpoint-" in best else None
    return {
        "val_accuracy_per_eval": [[e["step"], e["epoch"], e["eval_accuracy"]] for e in evals],
        "val_balanced_accuracy_per_eval": [e.get("eval_balanced_accuracy") for e in evals],
        "val_macro_f1_per_eval": [e.get("eval_macro_f1") for e in evals],
        "selected_step": best_step,
        "selected_is_last": best_step == state["global_step"],
        "precision": json.loads((out / "all_results.json").read_text()).get("precision"),
    }


def machine(parallel: int) -> str:
    import torch

    sys.path.insert(0, str(ROOT))
    from modeling.precision import cpu_bf16_units, cpu_model

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    units = ", ".join(cpu_bf16_units()) or "none"
    return (
        f"{platform.machine()} {cpu_model()} (bf16 units: {units}), {os.cpu_count()} cores{gpu}, "
        f"Python {platform.python_version()}; parallel {parallel}"
    )


def linear_probe_report(mae_dir: Path, data_dir: Path, cache: Path) -> dict:
    """Validation accuracy of a linear probe on the MAE's frozen features, a random twin's, and the pixels."""
    sys.path.insert(0, str(ROOT))
    from modeling.data import load_fer_dataset
    from modeling.training.probe import probe_model

    splits = load_fer_dataset("ferplus", data_dir, config="majority", cache_dir=cache)
    start = time.perf_counter()
    results = probe_model(str(mae_dir), splits["train"], splits["validation"], name="mae")
    report = {name: vars(r) for name, r in results.items()}
    report["seconds"] = time.perf_counter() - start
    return report


def write_best_card(best: dict, report: dict, name: str) -> Path:
    """The best arm's model card, rendered from its measured results into model_cards/ (weights stay out)."""
    import shutil

    sys.path.insert(0, str(ROOT))
    from modeling.hub.model_card import write_model_card

    run_dir = Path(best["output_dir"])
    card_dir = ROOT / "model_cards" / name
    card_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "confusion_matrix_test.png", card_dir / "confusion_matrix_test.png")
    config = json.loads((run_dir / "config.json").read_text())
    recipe = json.loads((ROOT / "configs" / f"study_ferplus_{best['arm']}.json").read_text())
    results = json.loads((run_dir / "all_results.json").read_text())
    return write_model_card(
        card_dir,
        results,
        config=config,
        dataset_name="ferplus",
        dataset_config="majority",
        model_name=name,
        details={
            "Pretraining": f"MAE on the FER+ train faces, labels unused (configs/study_ferplus_mae.json), held-out "
            f"reconstruction loss {report['mae_pretraining']['eval_start_loss']:.3f} -> "
            f"{report['mae_pretraining']['eval_loss']:.3f}",
            "Fine-tuning": f"{ARMS[best['arm']]}, seed {best['seed']}: configs/study_ferplus_{best['arm']}.json "
            f"({results['epoch']:g} epochs, base lr {recipe['base_learning_rate']})",
            "Selection": "best arm by validation accuracy in experiments/ferplus_study.py; test split scored once",
        },
    )


def markdown(report: dict) -> str:
    lines = [
        "| arm | seed | test acc | test balanced acc | test macro F1 | val acc (selection) | selected epoch | train min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['description']} | {r['seed']} | {100 * r['test_accuracy']:.2f} | "
            f"{100 * r['test_balanced_accuracy']:.2f} | {100 * r['test_macro_f1']:.2f} | "
            f"{100 * (r['val_accuracy'] or 0):.2f} | {_selected_epoch(r)} | {r['train_minutes']:.1f} |"
        )
    p = report["majority_class_baseline_test_accuracy"]
    # Always "neutral": recall 1 on neutral, 0 elsewhere; F1 of neutral 2p / (1 + p), averaged over 8 classes.
    lines.append(
        f"| majority-class baseline | - | {100 * p:.2f} | 12.50 | {100 * 2 * p / (1 + p) / 8:.2f} | - | - | - |"
    )
    mae = report["mae_pretraining"]
    lines += [
        "",
        f"MAE pretraining (shared by B-E): held-out reconstruction loss {mae['eval_start_loss'] or float('nan'):.3f}"
        f" -> {mae['eval_loss'] or float('nan'):.3f} in {mae['train_runtime_minutes']:.1f} min.",
        "",
        "Linear probe on frozen features (validation accuracy, %): "
        + ", ".join(
            f"{name} {100 * r['accuracy']:.2f}"
            for name, r in report["linear_probe_validation"].items()
            if isinstance(r, dict)
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _selected_epoch(row: dict) -> str:
    """``"3 of 5"``: the epoch of the selected checkpoint and of the last evaluation."""
    evals = row.get("val_accuracy_per_eval") or []
    chosen = [e for step, e, _ in evals if step == row.get("selected_step")]
    if not evals or not chosen:
        return "n/a"
    return f"{chosen[0]:g} of {evals[-1][1]:g}"


if __name__ == "__main__":
    main()
