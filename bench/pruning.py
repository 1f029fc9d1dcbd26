"""What the median pruner saves: the same digits study with --pruner none and --pruner median.

    python -m bench.pruning [--n-calls 20] [--warmup 5] [--seeds 42 7 2026]

Per seed: the same space and seed with and without the pruner, one worker; prints wall time, summed fit time,
trials pruned, best validation accuracy and test accuracy of the champion, then the median over seeds of the
ratios (median / none) and of the quality differences.
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench.throughput import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n-calls", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2026])
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"{args.data}, {args.n_calls} trials, max_epochs {args.max_epochs}, warm-up {args.warmup} epochs\n")
    print("| seed | pruner | wall s | fit s (sum) | trials pruned | best val metric | test metric |")
    print("|---|---|---|---|---|---|---|")
    wall, fit, best, test = [], [], [], []
    for seed in args.seeds:
        results = {pruner: run(args.data, args.n_calls, 1, args.max_epochs, seed, pruner=pruner,
                               pruner_warmup_epochs=args.warmup) for pruner in ("none", "median")}
        for pruner, r in results.items():
            print(f"| {seed} | {pruner} | {r['wall']:.1f} | {r['fit']:.1f} | {r['pruned']:.0f} | {r['best']:.4f} | "
                  f"{r['test']:.4f} |", flush=True)
        none, median = results["none"], results["median"]
        wall.append(median["wall"] / none["wall"])
        fit.append(median["fit"] / none["fit"])
        best.append(median["best"] - none["best"])
        test.append(median["test"] - none["test"])
    print(f"\nmedian over {len(args.seeds)} seeds of median / none: wall {statistics.median(wall):.2f}, "
          f"fit {statistics.median(fit):.2f}; best {statistics.median(best):+.4f}, test {statistics.median(test):+.4f}")

if __name__ == "__main__":
    main()
