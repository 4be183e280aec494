"""Classify slices from the command line: `python -m model.predict FILE_OR_FOLDER [...]`.

Prints (or writes with --out) one row per scan: file, prediction, calibrated
probabilities, the spread over test-time variants, the guard's flags ("out of
distribution", "near-copy of a training slice") with their reasons, the subject
of the nearest training slice, and for a volume the slice used ("13/24": the
middle one). Every
file in a folder gets a row: an Analyze .hdr + .img pair or the files of one
DICOM series share one (their paths joined by " + "), and a file that cannot be
read, or is no scan type this tool reads, gets its reason in the `error` column
while the rest are still classified. Hidden files (names starting with a dot)
are skipped, and said so on standard error. The exit code is 1 when any file
failed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from model.constants import CLASS_NAMES, MODEL_CONFIG_PATH, WEIGHTS_PATH
from model.scan_io import MAX_VOLUME_BYTES, ScanError, group_uploads, open_upload


def collect_files(paths: list[Path]) -> list[Path]:
    """Every regular file named or found (recursively, sorted) in a named folder. Hidden files and folders
    inside a folder are left out, each said on standard error; files named explicitly are always kept."""
    files = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(path.rglob("*")):
            if any(part.startswith(".") for part in found.relative_to(path).parts):
                if found.is_file():
                    print(f"skipped hidden file {found}", file=sys.stderr)
            elif found.is_file():
                files.append(found)
    return files


def _read_all(files: list[Path]) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """(path, bytes) of the files that could be read, and error rows for the others (unreadable or too big
    to be a scan, which are never read into memory)."""
    readable, failed = [], []
    for path in files:
        try:
            if path.stat().st_size > MAX_VOLUME_BYTES:
                raise ScanError(f"{path.name}: {path.stat().st_size / 2**20:.0f} MB is over the "
                                f"{MAX_VOLUME_BYTES // 2**20} MB limit for a scan")
            readable.append((str(path), path.read_bytes()))
        except ScanError as exc:
            failed.append({"file": str(path), "error": str(exc)})
        except OSError as exc:
            failed.append({"file": str(path), "error": f"{path.name}: cannot be read ({exc.strerror or exc})"})
    return readable, failed


def predict_files(predictor, files: list[Path], batch_size: int = 64, bank=None) -> list[dict]:
    """Rows of {file, prediction, confidence, p_<class>..., spread, flags, reasons, nearest_subject, slice,
    error} in input order, one per scan: an Analyze pair or a DICOM series is one row, its paths joined by
    " + " (see `scan_io.group_uploads`). bank: the out-of-distribution guard (model.trust.TrustBank); without
    it the flags say "no guard"."""
    import numpy as np

    from model.trust import assess

    readable, failed = _read_all(files)
    order = {str(path): i for i, path in enumerate(files)}
    keyed, slices, colours, where = [(order[f["file"]], f) for f in failed], [], [], []
    for item in group_uploads(readable):
        row = {"file": " + ".join(name for name, _ in item)}
        try:
            scan = open_upload(item)
        except ScanError as exc:
            row["error"] = str(exc)
        else:
            slices.append(scan.image)
            colours.append(scan.colour)
            where.append(row)
            if scan.n_slices > 1:
                row["slice"] = f"{scan.slice_index + 1}/{scan.n_slices}"
        keyed.append((min(order[name] for name, _ in item), row))
    rows = [row for _, row in sorted(keyed, key=lambda pair: pair[0])]
    for start in range(0, len(slices), batch_size):
        chunk = slice(start, start + batch_size)
        for row, a in zip(where[chunk], assess(predictor, np.stack(slices[chunk]), bank, colours[chunk], k=1)):
            pred = a.prediction
            row.update({"prediction": pred.class_name, "confidence": round(pred.confidence, 6),
                        **{f"p_{n}": round(p, 6) for n, p in zip(CLASS_NAMES, pred.probabilities)},
                        "spread": round(a.spread, 4), "flags": "; ".join(a.flags()),
                        "reasons": "; ".join(a.trust.reasons) if a.trust else "",
                        "nearest_subject": a.trust.neighbours[0].subject if a.trust and a.trust.neighbours else ""})
    return rows


def format_rows(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    columns = ["file", "prediction", "confidence", *(f"p_{n}" for n in CLASS_NAMES), "spread", "flags", "reasons",
               "nearest_subject", "slice", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="scan files (PNG, JPEG, BMP, TIFF, DICOM, NIfTI, Analyze .hdr + .img) or folders "
                             "(searched recursively)")
    parser.add_argument("--format", choices=("csv", "json"), default=None,
                        help="output format (default: from --out's suffix, else csv)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of standard output")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="default: %(default)s")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--no-guard", action="store_true",
                        help="skip the out-of-distribution guard and near-copy flag (default: checked)")
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
    from model.trust import TrustBank, TrustBankError

    bank = None
    if not args.no_guard:
        try:
            bank = TrustBank.load()
        except TrustBankError as exc:
            print(f"warning: no out-of-distribution guard ({exc}); flags say 'no guard'", file=sys.stderr)
    rows = predict_files(predictor, collect_files(args.paths), bank=bank)
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
