"""`alzmri`: the command line of the product (declared in pyproject.toml's [project.scripts]).

    alzmri predict scans/ --out results.csv      # classify files, folders, zips, parquet (model.serve.predict)
    alzmri serve --port 8000                     # the REST API (model.serve.api), docs at /docs
    alzmri evaluate                              # the published test split -> assets/metrics.json

Training, cross-validation and the data commands are `alzmri-train` (model.training.cli): runtime never
imports training. Every sub-command's `--help` states its defaults. Each sub-command's module is imported only
when it runs, so `alzmri predict` starts without the server and `alzmri serve` without the batch reader.
"""
from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "predict": "classify scans from files, folders, zip archives or parquet (streams; torchrun shards)",
    "serve": "serve the prediction REST API with uvicorn",
    "evaluate": "evaluate the shipped model on the published test split -> assets/metrics.json",
}
# the commands that moved to `alzmri-train`; `alzmri train ...` says where they went instead of failing on a choice
MOVED = ("train", "crossval", "data")


def serve(argv: list[str]) -> int:
    import uvicorn  # only `alzmri serve` needs the server

    parser = argparse.ArgumentParser(prog="alzmri serve", description=COMMANDS["serve"] + "; $ALZ_MRI_API_KEY, "
                                     "when set, is the key every request must carry",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args(argv)
    uvicorn.run("model.serve.api:app", host=args.host, port=args.port)
    return 0


def run(command: str, argv: list[str]) -> int:
    """Hand `argv` to the sub-command's own parser (imported here, when it runs: see the module docstring)."""
    if command == "predict":
        from model.serve.predict import main
        return main(argv)
    if command == "evaluate":
        from model.qualify.evaluate import main
        return main(argv)
    return serve(argv)


def dispatch(argv: list[str], prog: str, description: str, commands: dict[str, str], run, epilog: str = "") -> int:
    """The one dispatcher of `alzmri` and `alzmri-train`: help or an unknown command answered by argparse (exit 0
    or 2), anything else handed to `run(command, rest)`."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=f"`{prog} COMMAND --help` gives a command's options and their defaults."
                                            + (f" {epilog}" if epilog else ""))
    parser.add_argument("command", choices=list(commands), metavar="COMMAND",
                        help="; ".join(f"{k}: {v}" for k, v in commands.items()))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        parser.parse_args(argv[:1] or ["--help"])
    return run(argv[0], argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in MOVED:
        print(f"alzmri: '{argv[0]}' is a training command: run `alzmri-train {' '.join(argv)}`", file=sys.stderr)
        return 2
    return dispatch(argv, "alzmri", "Predict, serve and evaluate (training: alzmri-train).", COMMANDS, run)


if __name__ == "__main__":
    raise SystemExit(main())
