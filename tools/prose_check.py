"""Sentence lengths of the whitepaper's body as rendered (`python tools/prose_check.py`).

Reads the executed whitepaper notebook that `make report` wrote (the blocks the PDF was made of),
prints the body's sentence count, median and longest sentence, and exits 1 when the median is 22
words or more or a sentence runs over 50.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cliffbench.report.prose import body_blocks, notebook_blocks, prose_sentences, prose_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebook", type=Path, nargs="?", default=Path("report/executed/30_whitepaper.ipynb"))
    ap.add_argument("--top", type=int, default=5, help="print this many of the longest sentences")
    args = ap.parse_args()
    blocks = body_blocks(notebook_blocks(args.notebook))
    stats = prose_stats(blocks)
    print(f"{args.notebook}: {stats.n_sentences} sentences, median {stats.median_words:g} words, max {stats.max_words}")
    for s in sorted(prose_sentences(blocks), key=lambda s: -len(s.split()))[: args.top]:
        print(f"  {len(s.split()):3d}  {s}")
    sys.exit(0 if stats.ok else 1)


if __name__ == "__main__":
    main()
