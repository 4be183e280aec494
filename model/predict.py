"""Classify slices from the command line: `python -m model.predict FILE_OR_FOLDER [...]`.

Prints (or writes with --out) one row per image: file, prediction, calibrated
probabilities. Files that cannot be read are reported with the reason and the
rest are still classified; the exit code is 1 when any file failed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from model.constants import CLASS_NAMES, MODEL_CONFIG_PATH, WEIGHTS_PATH
from model.data import IMAGE_SUFFIXES
from model.scan_io import ScanError, read_scan


def collect_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def predict_files(predictor, files: list[Path], batch_size: int = 64) -> list[dict]:
    """Rows of {file, prediction, p_<class>..., error} in input order."""
    import numpy as np

    rows, slices, where = [], [], []
    for path in files:
        try:
            slices.append(read_scan(path.read_bytes(), path.name))
            where.append(len(rows))
            rows.append({"file": str(path)})
        except (ScanError, OSError) as exc:
            rows.append({"file": str(path), "error": str(exc)})
    if slices:
        for i, pred in zip(where, predictor.predict(np.stack(slices), batch_size)):
            rows[i].update({"prediction": pred.class_name, "confidence": round(pred.confidence, 6),
                            **{f"p_{n}": round(p, 6) for n, p in zip(CLASS_NAMES, pred.probabilities)}})
    return rows


def format_rows(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    columns = ["file", "prediction", "confidence", *(f"p_{n}" for n in CLASS_NAMES), "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders (searched recursively)")
    parser.add_argument("--format", choices=("csv", "json"), default=None,
                        help="output format (default: from --out's suffix, else csv)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of standard output")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="default: %(default)s")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    args = parser.parse_args(argv)
    fmt = args.format or ("json" if args.out and args.out.suffix == ".json" else "csv")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.exit(2, f"error: not found: {', '.join(missing)}\n")
    from model.checkpoint import ModelLoadError
    from model.inference import Predictor

    try:
        predictor = Predictor.from_assets(args.weights, args.config, device=args.device)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    rows = predict_files(predictor, collect_files(args.paths))
    text = format_rows(rows, fmt)
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        except OSError as exc:
            parser.exit(2, f"error: cannot write {args.out}: {exc.strerror or exc}\n")
    else:
        sys.stdout.write(text)
    failed = [r for r in rows if "error" in r]
    for row in failed:
        print(f"skipped {row['file']}: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
