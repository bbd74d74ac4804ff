"""`python -m llada_lightning.scaling SWEEP_DIR|POINTS.csv [--out DIR]`: points.csv + fit.json, and a summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llada_lightning.io import atomic_write_text
from llada_lightning.scaling.collect import collect, read_points, write_csv
from llada_lightning.scaling.study import fit_study


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llada_lightning.scaling", description=__doc__)
    ap.add_argument("source", help="a sweep directory (its **/result.json) or a CSV of points")
    ap.add_argument("--out", help="output directory (default: the sweep directory, or the CSV's directory)")
    ap.add_argument("--convention", choices=("6N", "full"), default=None, help="FLOP convention of C")
    ap.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-parametric", action="store_true", help="skip the Approach-3 fit (the slowest)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the parametric start grid")
    args = ap.parse_args(argv)
    src = Path(args.source)
    if src.is_dir():
        table = collect(src, convention=args.convention)
        out = Path(args.out) if args.out else src
    else:
        table = read_points(src)
        print(table.report())
        out = Path(args.out) if args.out else src.parent
    write_csv(table, out / "points.csv")
    result = fit_study(
        table,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        parametric=not args.no_parametric,
        parametric_workers=args.workers,
    )
    atomic_write_text(out / "fit.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    for objective, sec in result["objectives"].items():
        iso, fr = sec.get("isoflop", {}), sec.get("frontier", {})
        print(f"{objective}: a={iso.get('a')} b={iso.get('b')} frontier E={fr.get('E')} alpha={fr.get('alpha')}")
    if "comparison" in result:
        print(f"k(C) at {result['comparison']['compute']}: {result['comparison']['k']}")
    for w in result["warnings"]:
        print(f"warning: {w}")
    print(f"wrote {out / 'points.csv'} and {out / 'fit.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
