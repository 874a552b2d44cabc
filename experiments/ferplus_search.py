#!/usr/bin/env python
"""The recipe search for the shipped FER+ model (issue 14), on validation only, with short budgets.

Every trial is a run of one of the package's scripts: a base recipe in ``configs/search_ferplus_*.json`` plus the
trial's flags (``TRIALS`` below, one entry per configuration tried). A fine-tuning trial selects its checkpoint on
the FER+ validation split after each epoch and never scores the test split (``--do_predict false``); an MAE trial
reports its held-out reconstruction loss. Finished trials are skipped and interrupted ones resume from their last
checkpoint, so the command can simply be run again; every trial ever run stays in the results.

    python experiments/ferplus_search.py --trials grid_p8,grid_p6,grid_p4   # reads ../shared/data/ferplus
    python experiments/ferplus_search.py --list                              # the trials and what each changes
    python experiments/ferplus_search.py --tiny --work_dir /tmp/search      # seconds-long smoke run on mini/

Writes results/ferplus_search.json (every trial: flags, validation metrics per epoch, the selected epoch, minutes,
precision, CPU) and results/ferplus_search.md (one table row per trial).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ferplus_study import SHARED_FERPLUS, TINY_MODEL, add_time, machine, run, selection, unpack_ferplus  # noqa: E402

FINETUNE = "configs/search_ferplus_finetune.json"
MAE = "configs/search_ferplus_mae.json"
TEACHER = "modeling.training.teacher"  # a module run with -m: the convolutional teacher has no JSON recipe

P6_LONG = ["--patch_size", "6", "--num_train_epochs", "10", "--warmup_epochs", "1", "--augmentation", "regular",
           "--layer_decay", "0.75", "--drop_path", "0.1"]  # fmt: skip
VOTES = ["--dataset_config_name", "probability", "--eval_dataset_config_name", "majority"]

# name -> (script recipe, what the trial changes against its base, flags, the MAE trial it starts from or None).
# Order is the order the search ran in; each phase builds on what the one before measured (results/ferplus_search.md).
TRIALS: dict[str, dict] = {
    # Phase 1, the token grid of a 48 px face: the same 6-layer, 192-wide ViT from scratch, 3 epochs, no augmentation.
    # Patch 8 is the study's 6x6 grid; 6 gives 8x8 and 4 gives 12x12 tokens (4x the cost of patch 8 per image).
    "grid_p8": {"recipe": FINETUNE, "about": "from scratch, patch 8 (6x6 tokens)", "flags": ["--patch_size", "8"]},
    "grid_p6": {"recipe": FINETUNE, "about": "from scratch, patch 6 (8x8 tokens)", "flags": ["--patch_size", "6"]},
    "grid_p4": {"recipe": FINETUNE, "about": "from scratch, patch 4 (12x12 tokens)", "flags": ["--patch_size", "4"]},
    # Phase 2, does a short MAE pay on the finer grids: 20 MAE epochs on the 28,558 training-folder images, then the
    # phase-1 fine-tuning budget from it (compare with grid_p6 / grid_p4 from scratch).
    "mae20_p6": {"recipe": MAE, "about": "MAE 20 epochs, patch 6", "flags": ["--patch_size", "6"]},
    "ft_p6_mae20": {
        "recipe": FINETUNE,
        "about": "grid_p6 from mae20_p6",
        "flags": ["--patch_size", "6"],
        "init": "mae20_p6",
    },
    "mae20_p4": {"recipe": MAE, "about": "MAE 20 epochs, patch 4", "flags": ["--patch_size", "4"]},
    "ft_p4_mae20": {
        "recipe": FINETUNE,
        "about": "grid_p4 from mae20_p4",
        "flags": ["--patch_size", "4"],
        "init": "mae20_p4",
    },
    # Phase 3, a schedule long enough to learn and the class balance, from mae20_p6 (patch 4 was 2.4x the time of
    # patch 6 for +4 points from scratch; its MAE is left for later): 10 epochs with the paper's regular augmentation
    # and the MAE fine-tuning regularisers at a mild strength, then the sampler (balanced accuracy weighs contempt
    # and disgust, 120 and 116 of 25,045 training faces, like neutral), then the FER+ vote distributions as targets.
    "ft10_reg": {
        "recipe": FINETUNE,
        "about": "mae20_p6, 10 epochs, regular aug, layer decay 0.75, drop path 0.1",
        "flags": [*P6_LONG],
        "init": "mae20_p6",
    },
    "ft10_reg_sqrt": {
        "recipe": FINETUNE,
        "about": "ft10_reg + sqrt sampler",
        "flags": [*P6_LONG, "--weighted_sampler", "sqrt"],
        "init": "mae20_p6",
    },
    "ft10_reg_capped10": {
        "recipe": FINETUNE,
        "about": "ft10_reg + capped sampler (at most 10x a class's share)",
        "flags": [*P6_LONG, "--weighted_sampler", "capped", "--max_oversampling", "10"],
        "init": "mae20_p6",
    },
    "ft10_reg_sqrt_votes": {
        "recipe": FINETUNE,
        "about": "ft10_reg_sqrt on the vote distributions (probability), selected on majority",
        "flags": [*P6_LONG, "--weighted_sampler", "sqrt", *VOTES],
        "init": "mae20_p6",
    },
    # Issue 26, distillation (DeiT): a ResNet-18 trained here on the same training faces and targets (vote
    # distributions, sqrt sampler, regular augmentation), selected on validation; then ft10_reg_sqrt_votes with
    # the teacher's logits on the same augmented batch mixed into the loss. The teacher is a training aid only.
    "teacher_r18": {
        "recipe": TEACHER,
        "about": "ResNet-18 teacher (24x24 first stage), 20 epochs, SGD, votes + sqrt sampler, regular aug",
        "flags": ["--epochs", "20"],
    },
    "ft10_reg_sqrt_votes_kd": {
        "recipe": FINETUNE,
        "about": "ft10_reg_sqrt_votes + soft distillation from teacher_r18 (alpha 0.5, T 1)",
        "flags": [*P6_LONG, "--weighted_sampler", "sqrt", *VOTES, "--distillation_alpha", "0.5"],
        "init": "mae20_p6",
        "teacher": "teacher_r18",
    },
    # Issue 26, after the distilled 6 x 192 patch-6 model stopped at 79.85% validation (results/ferplus_levers.md):
    # a larger student by its token grid, patch 4 (12x12 tokens, +4 points from scratch in phase 1), from
    # mae20_p4, with the same teacher.
    "ft10_p4_votes_kd": {
        "recipe": FINETUNE,
        "about": "ft10_reg_sqrt_votes_kd at patch 4, from mae20_p4",
        "flags": [
            "--patch_size",
            "4",
            *P6_LONG[2:],
            "--weighted_sampler",
            "sqrt",
            *VOTES,
            "--distillation_alpha",
            "0.5",
        ],
        "init": "mae20_p4",
        "teacher": "teacher_r18",
    },
}


def trial_command(name: str, data_dir: Path, work: Path, cache: Path, tiny: bool) -> list[str]:
    trial = TRIALS[name]
    if trial["recipe"] == TEACHER:
        cmd = [sys.executable, "-m", TEACHER, "--data_dir", str(data_dir), "--cache_dir", str(cache),
               "--output_dir", str(work / name), *trial["flags"]]  # fmt: skip
        if tiny:
            cmd += ["--epochs", "1", "--max_steps_per_epoch", "2", "--batch_size", "8", "--num_workers", "0"]
        return cmd
    is_mae = trial["recipe"] == MAE
    script = "run_mae.py" if is_mae else "run_finetune.py"
    data = data_dir / "FER2013Train" if is_mae else data_dir
    cmd = [sys.executable, script, trial["recipe"], "--data_dir", str(data), "--cache_dir", str(cache),
           "--output_dir", str(work / name), *trial["flags"]]  # fmt: skip
    if trial.get("init"):
        cmd += ["--model_name_or_path", str(work / trial["init"])]
    if trial.get("teacher"):
        cmd += ["--teacher_dir", str(work / trial["teacher"])]
    if tiny:
        overrides = TINY_MODEL if is_mae else TINY_MODEL.split(",decoder")[0]
        cmd += ["--config_overrides", overrides, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1"]
        cmd += ["--eval_strategy", "steps", "--eval_steps", "1"]
    return cmd


def finished(out: Path) -> bool:
    done = out / "all_results.json"
    return done.exists() and "train_runtime" in json.loads(done.read_text())


def script_of(trial: dict) -> str:
    return {MAE: "run_mae.py", TEACHER: f"python -m {TEACHER}"}.get(trial["recipe"], "run_finetune.py")


def teacher_selection(out: Path) -> dict:
    """The teacher's validation figures after each epoch (``history.json``), in :func:`selection`'s shape."""
    history = json.loads((out / "history.json").read_text())
    selected = json.loads((out / "all_results.json").read_text())["selected_epoch"]
    return {
        "val_accuracy_per_eval": [[r["epoch"], r["epoch"], r["eval_accuracy"]] for r in history],
        "val_balanced_accuracy_per_eval": [r["eval_balanced_accuracy"] for r in history],
        "val_macro_f1_per_eval": [r["eval_macro_f1"] for r in history],
        "val_accuracy_flip_per_eval": [r["eval_accuracy_flip"] for r in history],
        "selected_step": selected,
        "selected_is_last": selected == history[-1]["epoch"],
        "cpu_hours": sum(r["cpu_s"] for r in history) / 3600,
    }


def record(name: str, out: Path) -> dict:
    trial = TRIALS[name]
    results = json.loads((out / "all_results.json").read_text())
    row = {
        "trial": name,
        "about": trial["about"],
        "script": script_of(trial),
        "recipe": trial["recipe"],
        "flags": trial["flags"],
        "init": trial.get("init"),
        **({"teacher": trial["teacher"]} if trial.get("teacher") else {}),
        "minutes": json.loads((out / "study_time.json").read_text())["seconds"] / 60,
        "train_images_per_s": results.get("train_samples_per_second"),
        "epochs": results.get("epoch"),
        "precision": results.get("precision"),
        # Trials run before --parallel existed ran alone on both cores.
        **(json.loads((out / "search_threads.json").read_text()) if (out / "search_threads.json").exists() else {}),
    }
    if row["script"] == "run_mae.py":
        row.update(eval_start_loss=results.get("eval_start_loss"), eval_loss=results.get("eval_loss"))
    elif trial["recipe"] == TEACHER:
        row.update({k: results.get(f"eval_{k}") for k in ("accuracy", "balanced_accuracy", "macro_f1")})
        row.update(teacher_selection(out))
    else:
        row.update({k: results.get(f"eval_{k}") for k in ("accuracy", "balanced_accuracy", "macro_f1")})
        row.update(selection(out))
    return row


def markdown(report: dict) -> str:
    lines = [
        f"Machine: {report['machine']}. Validation split of FER+ (majority, 3,191 faces); the test split is not "
        "scored during the search.",
        "",
        "| trial | what changes | val acc | val bal. acc | val macro F1 | selected epoch | MAE held-out loss | "
        "train img/s | minutes (threads) | precision |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["trials"]:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        evals = r.get("val_accuracy_per_eval") or []
        chosen = [e for step, e, _ in evals if step == r.get("selected_step")]
        epoch = f"{chosen[0]:g} of {evals[-1][1]:g}" if chosen else "-"
        loss = "-" if r.get("eval_loss") is None else f"{r['eval_start_loss']:.3f} -> {r['eval_loss']:.3f}"
        ips = "-" if r.get("train_images_per_s") is None else f"{r['train_images_per_s']:.0f}"
        lines.append(
            f"| {r['trial']} | {r['about']} | {pct(r.get('accuracy'))} | {pct(r.get('balanced_accuracy'))} | "
            f"{pct(r.get('macro_f1'))} | {epoch} | {loss} | {ips} | {r['minutes']:.1f} ({r.get('threads', 2)}) | "
            f"{(r.get('precision') or '-').split(' (')[0]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", default=None, help="Comma-separated trial names (default: all, in order)")
    parser.add_argument("--list", action="store_true", help="Print the trials and exit")
    parser.add_argument("--data_dir", help="Official FER+ layout; default: unpack ../shared/data/ferplus")
    parser.add_argument("--work_dir", default=None, help="Default: outputs/search_ferplus")
    parser.add_argument("--results_dir", default=None, help="Default: results/ (with --tiny: the work dir)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="Fine-tuning trials at a time (each on cores / parallel threads)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="Smoke run on FER+ mini/: 2-layer width-32 models, 2 steps"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, trial in TRIALS.items():
            print(f"{name}: {trial['about']} ({trial['recipe']} {' '.join(trial['flags'])})")
        return {}
    names = list(TRIALS) if args.trials is None else [n.strip() for n in args.trials.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRIALS]
    if unknown:
        parser.error(f"unknown trial(s) {unknown}; see --list")

    work = Path(args.work_dir or ROOT / "outputs" / "search_ferplus")
    work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.results_dir or (work if args.tiny else ROOT / "results"))
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif args.tiny:
        data_dir = SHARED_FERPLUS / "mini"
    else:
        data_dir = unpack_ferplus(work / "ferplus_official")
    cache = work / "cache"

    # MAE and teacher trials one at a time on every core; then the fine-tuning trials (which may start from those
    # MAEs and learn from those teachers), --parallel at a time on an equal share of the cores each.
    cores = os.cpu_count() or 2
    pending = [n for n in names if not finished(work / n)]
    maes = [n for n in pending if TRIALS[n]["recipe"] in (MAE, TEACHER)]

    def do(name: str, threads: int) -> None:
        out = work / name
        seconds = run(trial_command(name, data_dir, work, cache, args.tiny), work / f"{name}.log", threads)
        add_time(out, seconds)
        (out / "search_threads.json").write_text(json.dumps({"threads": threads, "parallel": cores // threads}))

    for name in maes:
        do(name, cores)
    threads = max(1, cores // args.parallel)
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(lambda n: do(n, threads), [n for n in pending if n not in maes]))

    path = results_dir / "ferplus_search.json"
    previous = {r["trial"]: r for r in json.loads(path.read_text())["trials"]} if path.exists() else {}
    for name in names:
        previous[name] = record(name, work / name)
    order = {name: i for i, name in enumerate(TRIALS)}
    report = {
        "machine": machine(1).rsplit("; parallel", 1)[0],
        "base_recipes": [FINETUNE, MAE],
        "trials": sorted(previous.values(), key=lambda r: order.get(r["trial"], len(order))),
    }
    path.write_text(json.dumps(report, indent=2))
    (results_dir / "ferplus_search.md").write_text(markdown(report))
    print(json.dumps({r["trial"]: r.get("accuracy", r.get("eval_loss")) for r in report["trials"]}, indent=2))
    return report


if __name__ == "__main__":
    main()
