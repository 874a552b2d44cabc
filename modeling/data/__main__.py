"""``python -m modeling.data NAME DATA_DIR [--config C] [--cache_dir D] [--strict]``.

Prepares the cache and prints the per-split, per-class counts with the excluded and unusable items, then
the cross-split exact duplicates (images with the same decoded pixels in two splits; test split first).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..cli import run_main
from .load import BUILDERS, fer_builder, load_with_report
from .report import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeling.data", description=__doc__)
    # No argparse choices: an unknown name gets fer_builder's one-line error with a did-you-mean.
    parser.add_argument("name", help=f"dataset: {', '.join(sorted(BUILDERS))}")
    parser.add_argument("data_dir", help="folder holding the dataset owner's files")
    parser.add_argument("--config", default=None, help="builder config (e.g. 7, original, probability)")
    parser.add_argument("--cache_dir", default=None, help="datasets cache folder (default: HF_DATASETS_CACHE)")
    parser.add_argument("--strict", action="store_true", help="fail on any corrupt/out-of-range/malformed item")
    parser.add_argument("--align", action="store_true", help="AffectNet: level the eyes before cropping")
    parser.add_argument(
        "--all_duplicates", action="store_true", help="name every cross-split duplicate, not the first 5 per pair"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    kwargs = {"align": True} if args.align else {}
    start = time.perf_counter()
    dataset, report = load_with_report(args.name, args.data_dir, args.config, args.cache_dir, args.strict, **kwargs)
    seconds = time.perf_counter() - start
    total = sum(len(d) for d in dataset.values())
    print(format_table(report, max_duplicates=None if args.all_duplicates else 5))
    cache = fer_builder(args.name, args.data_dir, args.config, args.cache_dir, **kwargs).cache_dir
    print(f"{total:,} examples in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} examples/s); cache: {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m modeling.data"))
