"""Classify scans from the command line, in one process or sharded over many: `python -m model.predict INPUT [...]`.

    python -m model.predict scans/ --out results.csv                  # a folder, searched recursively
    python -m model.predict cohort.zip test.parquet --out results.jsonl
    torchrun --nproc-per-node 4 -m model.predict scans/ --out results.csv   # 4 shards, one table
    python -m model.predict cohort/ --truth-from-folders --evaluation-out report.pdf   # your own cohort, evaluated

Inputs: scan files (PNG, JPEG, BMP, TIFF, DICOM, NIfTI, Analyze .hdr + .img), folders, zip archives (their
members, within `model.serve.batch`'s archive limits) and parquet files in the Hugging Face schema (column `image`, a
struct of `bytes` and `path`; one slice a row, shown as "FILE row N (path)"; `label` is not needed). A zip or
parquet file found inside a folder is read the same way.

Output: one result per scan in the schema of `model.reports.record` (docs/usage.md lists its fields): in CSV its
flat `row()` (file, files, kind, slice, n_slices, prediction, display_name, label, confidence, p_<class>, spread,
agreement, uncertainty_level, flags, reliable, reasons, nearest_subject, model_sha256, calibration_temperature,
error_code, error), in JSON and JSON Lines its nested `record()`, as the API answers. Every file gets a result, in
input order: an Analyze .hdr + .img pair or the files of one DICOM series share one (`files` names them all; in CSV
joined by " + "), and a file that cannot be read, or is no scan type this tool reads, gets its reason in `error`
while the rest are still classified. Hidden files (names starting with a dot) are skipped, and said so on standard
error. Formats: csv (the default), json (one array) or jsonl (one object a line), from --out's suffix unless
--format says. The exit code is 1 when any file failed (in every process of a sharded run), 2 for a wrong option.

Streaming: the cohort is never held in memory. A first pass (`model.serve.inputs`) lists the inputs without
reading them and groups files into scans; then scans are read and decoded one at a time, classified --batch-size at a time, and each
batch's rows are written (and flushed) before the next batch is read, so at most --batch-size decoded slices and
one scan's bytes are held. The trade-off is grouping: which files make one scan must be known before the first
is read, so the first pass opens every file for its first 132 bytes (DICOM's 'DICM' signature) and reads a DICOM
file's header, without the pixels, for its SeriesInstanceUID (so a DICOM header is read twice), and it keeps each
file's name and size until the end: about 0.3 KB a file, 0.3 GB for a million. Parquet rows are never grouped and
are read a batch of rows at a time (pyarrow decodes a row group's column chunk at once, so a row group is the unit
of memory there). A progress bar on standard error (not when it is no terminal, nor with --quiet) counts files
and files/s, and a last line gives the rate of the whole run, loading the model aside.

Sharding: under torchrun every process (RANK r of WORLD_SIZE w; device cuda:LOCAL_RANK on GPUs) makes the same
plan and classifies only the scans whose index % w == r, writing each row with its index to `<out>.part<r>` (or
a temporary folder when printing to standard output) as it goes. A collective over all processes (on a gloo
group, GPUs or not: it carries one number and may wait long) then acts as the barrier and sums the failures, so that every process exits 1 when any file failed,
and rank 0 merges the parts by index with heapq.merge, holding one row per process, into the one table, and
deletes them. Part files rather than all_gather_object: processes finish batches at different speeds and counts,
so gathering per batch would hold every process to the slowest at each step and leave rank 0 buffering rows out
of order; files keep the processes independent and the merge streaming. Several nodes need --out on a shared file
system. torchrun reports an exit code of 1 as a failed run with its own traceback, after the table is written.
Without torchrun none of this runs.
"""
from __future__ import annotations

import argparse
import csv
import heapq
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from model.core.assets import ModelLoadError
from model.core.constants import COHORT_BOOTSTRAP, MODEL_CONFIG_PATH, WEIGHTS_PATH
from model.core.runtimes import DEFAULT_ENGINE, ENGINE_ENV_VAR, RUNTIMES, EnginePredictor
from model.qualify.trust import TrustBank, TrustBankError
from model.reports.record import ROW_COLUMNS, Failed, Result, SubjectResult
from model.scans.scan_io import clean_name, scan_groups
from model.serve.batch import subject_results
from model.serve.inputs import BATCH_SIZE, Plan, Read, collect_files, stderr_line
from model.serve.pipeline import assess_opened, stage_volume

FORMATS = ("csv", "json", "jsonl")


# ---------------------------------------------------------------- classifying, a batch at a time
def classify(predictor, reads: Iterable[Read], bank=None, batch_size: int = BATCH_SIZE) -> Iterator[list[Read]]:
    """Batches of up to `batch_size` reads, in order, each with its result (`model.serve.pipeline.assess_opened`:
    prediction, probabilities, spread and the guard's flags; without a bank the flags say "no guard"). The next batch
    is read only once this one is handed on, so at most `batch_size` decoded slices are held."""
    reads = iter(reads)
    while batch := list(islice(reads, batch_size)):
        results = assess_opened([r.opened for r in batch], predictor=predictor, bank=bank)
        yield [Read(r.index, None, r.files, result if isinstance(result, Failed) else result.without_slice())
               for r, result in zip(batch, results)]  # the slices go with the batch
        del batch  # before the next batch is read


def output(result: Result | Failed, fmt: str) -> dict:
    """What one result writes: its flat row in CSV, its nested record in JSON and JSON Lines."""
    return result.row() if fmt == "csv" else result.record()


def predict_files(predictor, files: list[Path], batch_size: int = BATCH_SIZE, bank=None) -> list[Result | Failed]:
    """One result per scan (`model.reports.record`), in input order: an Analyze pair or a DICOM series is one (see
    `scan_io.scan_groups`); a folder, zip or parquet file gives one per scan inside. bank: the out-of-distribution
    guard (model.qualify.trust.TrustBank); without it the flags say "no guard". Streams like the CLI, but returns
    every result."""
    plan = Plan.of(files, say=lambda message: None)
    return [r.result for batch in classify(predictor, plan.scans(parquet_rows=batch_size), bank, batch_size)
            for r in batch]


# ---------------------------------------------------------------- writing rows as they come
class RowWriter:
    """Rows to a text stream as they come: csv (header first), json (one array, closed by `close`) or jsonl."""

    def __init__(self, stream: TextIO, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.stream, self.fmt, self.count = stream, fmt, 0
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=ROW_COLUMNS, restval="")
            self._csv.writeheader()
        elif fmt == "json":
            stream.write("[")

    def write(self, row: dict) -> None:
        if self.fmt == "csv":
            self._csv.writerow(row)
        elif self.fmt == "json":
            self.stream.write(("," if self.count else "") + "\n " + json.dumps(row))
        else:
            self.stream.write(json.dumps(row) + "\n")
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def format_rows(rows: list[dict], fmt: str) -> str:
    """All rows as one string in `fmt` (csv, json or jsonl)."""
    buf = io.StringIO()
    writer = RowWriter(buf, fmt)
    for row in rows:
        writer.write(row)
    writer.close()
    return buf.getvalue()


def _merge_parts(parts: list[Path], writer: RowWriter) -> tuple[int, int]:
    """Rank 0: the parts' rows into `writer` in input order, one row per part in memory. (rows, files)."""
    streams = [part.open() for part in parts]
    rows = files = 0
    try:  # each part is in index order already; a line is [index, files, row]
        for _, count, row in heapq.merge(*(map(json.loads, s) for s in streams), key=lambda line: line[0]):
            writer.write(row)
            rows, files = rows + 1, files + count
    finally:
        for s in streams:
            s.close()
    return rows, files


# ---------------------------------------------------------------- the command
def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0],
                                     epilog="Under torchrun: torchrun --nproc-per-node N -m model.predict ...")
    parser.add_argument("paths", nargs="+", type=Path,
                        help="scan files (PNG, JPEG, BMP, TIFF, DICOM, NIfTI, Analyze .hdr + .img), folders "
                             "(searched recursively), zip archives or parquet files (Hugging Face schema)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: from --out's suffix, .json or .jsonl, else csv)")
    parser.add_argument("--out", type=Path, default=None, help="write here (default: standard output)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="default: %(default)s")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda (default: auto; under torchrun on GPUs, cuda:LOCAL_RANK)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="slices classified together, and the most decoded slices held (default: %(default)s)")
    parser.add_argument("--no-guard", action="store_true",
                        help="skip the out-of-distribution guard and near-copy flag (default: checked)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar nor rate line (default: shown)")
    parser.add_argument("--threads", type=int, default=0,
                        help="PyTorch intra-op threads; 0: one for a single file (its nine small forward passes "
                             "gain nothing from a second thread and lose much when another job holds a core), "
                             "PyTorch's default for anything more (default: %(default)s)")
    parser.add_argument("--subject-by", choices=("folder", "prefix"), default=None,
                        help="also stage subjects: the files of one folder, or of one file-name prefix (the part "
                             "before the last '_' or '-'), as one subject, the mean of their probabilities; each "
                             "subject's row comes before its files' rows (default: no subjects, a row per scan)")
    parser.add_argument("--truth", type=Path, default=None, metavar="CSV",
                        help="evaluate on your own cohort: a CSV with the columns file and stage (a class name or "
                             "label index) and optionally subject; a file entry matches a path ending with it "
                             "(default: none, no evaluation)")
    parser.add_argument("--truth-from-folders", action="store_true",
                        help="evaluate on your own cohort, reading each file's true stage from a folder named after "
                             "it (Mild_Demented/, 'very mild demented/', ...; a folder inside it is the subject) "
                             "(default: off)")
    parser.add_argument("--evaluation-out", type=Path, default=None,
                        help="write the cohort evaluation here: .pdf, .html or .json (default: a summary on "
                             "standard error only)")
    parser.add_argument("--bootstrap", type=int, default=COHORT_BOOTSTRAP,
                        help="bootstrap resamples for the evaluation's 95%% intervals (default: %(default)s)")
    parser.add_argument("--volume-as-subject", action="store_true",
                        help="stage each NIfTI file or Analyze pair as a subject: the 32-slice slab matching the "
                             "training slices' positions, a row per slab slice and the subject's row (the mean of "
                             "their probabilities) first (default: a volume is read at its middle slice)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    suffix = args.out.suffix.lower() if args.out else ""
    fmt = args.format or {".json": "json", ".jsonl": "jsonl"}.get(suffix, "csv")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.exit(2, f"error: not found: {', '.join(missing)}\n")
    if args.batch_size < 1:
        parser.exit(2, f"error: --batch-size must be at least 1, not {args.batch_size}\n")
    if args.threads < 0:
        parser.exit(2, f"error: --threads must be 0 (automatic) or more, not {args.threads}\n")
    # One file on the 2-core machine with a niced job on the other core: 3.0-3.7 s wall with 1 thread, 5.7-5.9 s
    # with 2 (2026-12-02, benchmarks/bench_workflow.py's CLI figure).
    threads = args.threads or (1 if len(args.paths) == 1 and args.paths[0].is_file() else 0)
    try:
        rank, world, predictor = load_predictor(args.weights, args.config, args.device, threads)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    say = stderr_line if rank == 0 else (lambda message: None)
    evaluating = args.truth is not None or args.truth_from_folders
    if args.evaluation_out is not None and not evaluating:
        parser.exit(2, "error: --evaluation-out needs true stages: add --truth CSV or --truth-from-folders\n")
    if evaluating:
        problem = _cohort_problem(args, world)
        if problem:
            parser.exit(2, f"error: {problem}\n")
    bank = None if args.no_guard else _load_bank(say)
    started = time.perf_counter()
    if evaluating:
        return _run_cohort(args, predictor, bank, fmt, parser)
    if args.volume_as_subject or args.subject_by:
        if world > 1:
            parser.exit(2, "error: --volume-as-subject and --subject-by run in one process; drop torchrun\n")
        if args.volume_as_subject and args.subject_by:
            parser.exit(2, "error: choose --volume-as-subject (a volume is a subject) or --subject-by (files are)\n")
        return _run_subjects(args, predictor, bank, fmt, parser)
    plan = Plan.of(args.paths, say)
    if world == 1:
        rows, files, failed = _run_single(plan, predictor, bank, args, fmt, parser)
    else:
        rows, files, failed = _run_sharded(plan, predictor, bank, args, fmt, rank, world, parser)
    if rank == 0 and not args.quiet:
        seconds = time.perf_counter() - started
        say(f"{rows:,} scans from {files:,} files in {seconds:.1f} s: {files / max(seconds, 1e-9):.1f} files/s"
            + (f" over {world} processes" if world > 1 else ""))
    return 1 if failed else 0


def load_predictor(weights: Path, config: Path, device: str = "auto", threads: int = 0):
    """(rank, world size, predictor) for this process.

    One process on the CPU: the exported engine ($ALZ_MRI_ENGINE, OpenVINO by default), from its checked export in
    the cache and without importing PyTorch (`EnginePredictor.from_cache`): importing torch alone was ~1.8 s of the
    ~3.5 s a one-file run took (2026-12-03), so torch is imported below, not at the top. Otherwise (torchrun, a GPU,
    $ALZ_MRI_ENGINE=torch, or no checked export cached yet) the PyTorch `Predictor`, which on the CPU predicts with
    the same engine as the API and leaves the export and its check record for the next run. Both give the same
    probabilities to ~1e-5 (the engine is checked against PyTorch's logits to 1e-3)."""
    engine = os.environ.get(ENGINE_ENV_VAR, DEFAULT_ENGINE)
    single = os.environ.get("WORLD_SIZE", "1") == "1"
    if single and engine in RUNTIMES and (device == "cpu" or (device == "auto" and not _gpu_visible())):
        fast = EnginePredictor.from_cache(weights, config, engine=engine, threads=threads)
        if fast is not None:
            return 0, 1, fast
    import torch  # see the docstring

    from model.core.distributed import init_distributed
    from model.core.inference import Predictor

    if threads:
        torch.set_num_threads(threads)
    rank, world, where = init_distributed(device)  # (0, 1, device) without torchrun
    if where.type != "cpu" or engine not in RUNTIMES:
        return rank, world, Predictor.from_assets(weights, config, device=str(where))
    try:
        return rank, world, Predictor.from_assets(weights, config, device="cpu", engine=engine, threads=threads or None)
    except (ModelLoadError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - any engine failure: predict with PyTorch, and say so
        stderr_line(f"note: the {engine} engine is unavailable ({type(exc).__name__}: {exc}); predicting with PyTorch")
        return rank, world, Predictor.from_assets(weights, config, device="cpu")


def _gpu_visible() -> bool:
    """Whether the NVIDIA driver lists a GPU that CUDA_VISIBLE_DEVICES does not hide: a stand-in for
    torch.cuda.is_available() that needs no torch. A false yes only costs the PyTorch path, which checks properly."""
    gpus = Path("/proc/driver/nvidia/gpus")
    listed = gpus.is_dir() and any(gpus.iterdir())
    return listed and os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() not in ("", "-1")


def subject_volumes(paths: list[Path], predictor, bank=None, template=None) -> list[SubjectResult | Failed]:
    """Each NIfTI file or Analyze pair among `paths` (folders searched) staged as a subject
    (`model.serve.pipeline.stage_volume`), in input order; anything else gets a Failed record saying why."""
    files = collect_files(paths)
    named = [(clean_name(str(f)), f) for f in files]
    out = []
    for group in scan_groups([name for name, _ in named], lambda i: ""):
        item = [(named[i][0], named[i][1].read_bytes()) for i in group]
        out.append(stage_volume(item, predictor=predictor, bank=bank, template=template))
    return out


EVALUATION_FORMATS = (".pdf", ".html", ".json")


def _cohort_problem(args, world: int) -> str | None:
    """Why the options for a cohort evaluation cannot run together, or None."""
    if args.truth is not None and args.truth_from_folders:
        return "choose --truth CSV or --truth-from-folders, not both"
    if args.truth is not None and not args.truth.is_file():
        return f"--truth: no such file: {args.truth}"
    if args.volume_as_subject:
        return "--volume-as-subject cannot be evaluated against true stages; stage the files, or drop the truth"
    if world > 1:
        return "an evaluation runs in one process; drop torchrun"
    if args.bootstrap < 0:
        return f"--bootstrap must be 0 or more, not {args.bootstrap}"
    suffix = args.evaluation_out.suffix.lower() if args.evaluation_out else ".json"
    if suffix not in EVALUATION_FORMATS:
        return f"--evaluation-out must end in {', '.join(EVALUATION_FORMATS)}, not '{suffix or args.evaluation_out}'"
    return None


def _json_safe(value):
    """The evaluation as strict JSON: an undefined figure (nan) becomes null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _run_cohort(args, predictor, bank, fmt: str, parser: argparse.ArgumentParser) -> int:
    """Classify every file, write the rows as usual, then evaluate the labelled ones (`model.serve.cohort`)."""
    # the evaluation's modules (scikit-learn, the PDF writer with matplotlib and pandas: 1.5-3 s of imports) load
    # only when a cohort is evaluated; `alzmri predict FILE` never needs them (`python -X importtime`, 2026-12-02)
    from model.reports.documents import cohort_report
    from model.reports.stamp import reproducibility_stamp
    from model.serve.cohort import TruthError, evaluate_cohort, truth_from_csv, truth_from_folders

    scans = predict_files(predictor, args.paths, args.batch_size, bank)
    group_by = {"prefix": "name prefix"}.get(args.subject_by, args.subject_by) or "none"
    try:
        names = [r.file for r in scans]
        truth = (truth_from_folders(names) if args.truth_from_folders else
                 truth_from_csv(args.truth.read_bytes(), names))
        evaluation = evaluate_cohort(scans, truth, group_by=group_by, n_bootstrap=args.bootstrap)
    except OSError as exc:
        parser.exit(2, f"error: cannot read {args.truth}: {exc.strerror or exc}\n")
    except TruthError as exc:
        parser.exit(2, f"error: {exc}\n")
    results = subject_results(scans, group_by) + [r for r in scans if isinstance(r, Failed)] \
        if args.subject_by else scans
    _write_results(results, args, fmt, parser)
    if args.evaluation_out:
        suffix = args.evaluation_out.suffix.lower()
        try:
            args.evaluation_out.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".json":
                args.evaluation_out.write_text(json.dumps(_json_safe(evaluation), indent=1) + "\n")
            else:
                args.evaluation_out.write_bytes(cohort_report(evaluation, stamp=reproducibility_stamp(predictor),
                                                              fmt=suffix[1:]))
        except OSError as exc:
            parser.exit(2, f"error: cannot write {args.evaluation_out}: {exc.strerror or exc}\n")
    level = evaluation["subject"] or evaluation["slice"]
    auc = level["any_dementia_auc"]
    stderr_line(f"evaluated {evaluation['labelled']} labelled slices ({evaluation['subjects']} subjects; "
            f"{evaluation['unlabelled']} without a true stage left out): per "
            f"{'subject' if evaluation['subject'] else 'slice'} balanced accuracy {level['balanced_accuracy']:.3f}, "
            f"any-dementia AUC {'undefined' if auc != auc else f'{auc:.3f}'}"
            + (f"; wrote {args.evaluation_out}" if args.evaluation_out else ""))
    for note in evaluation["notes"]:
        stderr_line(f"note: {note}")
    return 1 if any(isinstance(r, Failed) for r in scans) else 0


def _write_results(results, args, fmt: str, parser: argparse.ArgumentParser) -> None:
    stream = _open_out(parser, args.out)
    writer = RowWriter(stream, fmt)
    for result in results:
        rows = result.rows() if isinstance(result, SubjectResult) and fmt == "csv" else [output(result, fmt)]
        for row in rows:
            writer.write(row)
    writer.close()
    if stream is not sys.stdout:
        stream.close()


def _run_subjects(args, predictor, bank, fmt: str, parser: argparse.ArgumentParser) -> int:
    if args.subject_by:
        scans = predict_files(predictor, args.paths, args.batch_size, bank)
        results = subject_results(scans, {"prefix": "name prefix"}.get(args.subject_by, args.subject_by))
        results += [r for r in scans if isinstance(r, Failed)]
    else:
        results = subject_volumes(args.paths, predictor, bank)
    _write_results(results, args, fmt, parser)
    failed = sum(isinstance(r, Failed) for r in results)
    if not args.quiet:
        stderr_line(f"{len(results) - failed} subjects staged" + (f"; {failed} could not be" if failed else ""))
    return 1 if failed else 0


def _load_bank(say: Callable[[str], None]):
    try:
        return TrustBank.load()
    except TrustBankError as exc:
        say(f"warning: no out-of-distribution guard ({exc}); flags say 'no guard'")
        return None


def _open_out(parser: argparse.ArgumentParser, path: Path | None) -> TextIO:
    if path is None:
        return sys.stdout
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", newline="")
    except OSError as exc:
        parser.exit(2, f"error: cannot write {path}: {exc.strerror or exc}\n")


def _run(plan: Plan, predictor, bank, args, emit: Callable[[list[Read]], None], rank: int = 0,
         world: int = 1) -> tuple[int, int, int]:
    """Classify this process's shard, handing each batch to `emit` as soon as it is done. (rows, files, failed)."""
    bar = tqdm(total=plan.files(rank, world), unit=" files", file=sys.stderr, dynamic_ncols=True,
               desc=f"shard {rank + 1}/{world}" if world > 1 else None,
               disable=args.quiet or rank != 0 or not sys.stderr.isatty())  # rank 0's bar stands for all
    rows = files = failed = 0
    with bar:
        for batch in classify(predictor, plan.scans(rank, world, args.batch_size), bank, args.batch_size):
            emit(batch)
            for r in batch:
                if isinstance(r.result, Failed):
                    failed += 1
                    bar.write(f"skipped {r.result.file}: {r.result.error.message}", file=sys.stderr)
            done = sum(r.files for r in batch)
            rows, files = rows + len(batch), files + done
            bar.update(done)
    return rows, files, failed


def _run_single(plan: Plan, predictor, bank, args, fmt: str, parser: argparse.ArgumentParser) -> tuple[int, int, int]:
    stream = _open_out(parser, args.out)
    writer = RowWriter(stream, fmt)

    def emit(batch: list[Read]) -> None:
        for r in batch:
            writer.write(output(r.result, fmt))
        stream.flush()

    try:
        counts = _run(plan, predictor, bank, args, emit)
        writer.close()
    finally:
        if stream is not sys.stdout:
            stream.close()
    return counts


def _run_sharded(plan: Plan, predictor, bank, args, fmt: str, rank: int, world: int,
                 parser: argparse.ArgumentParser) -> tuple[int, int, int]:
    """Each process writes its shard to a part file; rank 0 merges them into the one table once all are done."""

    # The waits at the end carry one number but may be long (the slowest shard, then rank 0's merge): a gloo group
    # with a day's timeout, on GPUs too, rather than NCCL's ten minutes.
    import torch  # only under torchrun, where the process group already imported it (see `load_predictor`)
    import torch.distributed as dist

    sync = dist.new_group(backend="gloo", timeout=timedelta(hours=24))
    where = [str(args.out) if args.out else (tempfile.mkdtemp(prefix="predict-") if rank == 0 else "")]
    if not args.out:
        dist.broadcast_object_list(where, src=0, group=sync)  # every process writes into rank 0's temporary folder
    stem = where[0] if args.out else str(Path(where[0]) / "rows")
    parts = [Path(f"{stem}.part{r}") for r in range(world)]
    with _open_out(parser, parts[rank]) as stream:
        def emit(batch: list[Read]) -> None:  # [index, files, row] lines, in index order within the part
            stream.writelines(json.dumps([r.index, r.files, output(r.result, fmt)]) + "\n" for r in batch)
            stream.flush()

        _, _, failed = _run(plan, predictor, bank, args, emit, rank, world)
    total = torch.tensor([failed])
    dist.all_reduce(total, group=sync)  # also the barrier: every part is complete and closed before anyone passes
    failed = int(total.item())
    rows = files = 0
    if rank == 0:
        stream = _open_out(parser, args.out)
        writer = RowWriter(stream, fmt)
        rows, files = _merge_parts(parts, writer)
        writer.close()
        if args.out:
            stream.close()
            for part in parts:
                part.unlink()
        else:
            shutil.rmtree(where[0], ignore_errors=True)
    # torchrun stops every process once one exits with an error (1 when a file failed): none leaves before the merge
    dist.barrier(group=sync)
    dist.destroy_process_group()
    return rows, files, failed


if __name__ == "__main__":
    raise SystemExit(main())
