"""What the median pruner saves: the same digits study with --pruner none and --pruner median.

    python -m bench.pruning [--n-calls 20] [--warmup 5]

Same seed, same space, one worker; prints wall time, summed fit time, trials pruned, best validation accuracy and
test accuracy of the champion, with ratios (median / none).
"""

from __future__ import annotations

import argparse
import os

from bench.throughput import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n-calls", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {pruner: run(args.data, args.n_calls, 1, args.max_epochs, args.seed, pruner=pruner,
                           pruner_warmup_epochs=args.warmup) for pruner in ("none", "median")}
    print(f"{args.data}, {args.n_calls} trials, max_epochs {args.max_epochs}, warm-up {args.warmup} epochs\n")
    print("| pruner | wall s | fit s (sum) | trials pruned | best val metric | test metric |")
    print("|---|---|---|---|---|---|")
    for pruner, r in results.items():
        print(f"| {pruner} | {r['wall']:.1f} | {r['fit']:.1f} | {r['pruned']:.0f} | {r['best']:.4f} | "
              f"{r['test']:.4f} |")
    none, median = results["none"], results["median"]
    print(f"\nmedian / none: wall {median['wall'] / none['wall']:.2f}, fit {median['fit'] / none['fit']:.2f}, "
          f"best {median['best'] - none['best']:+.4f}, test {median['test'] - none['test']:+.4f}")


if __name__ == "__main__":
    main()
