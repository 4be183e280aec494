"""`alzmri`: one command line for the whole project (declared in pyproject.toml's [project.scripts]).

    alzmri predict scans/ --out results.csv      # classify files, folders, zips, parquet (model.serve.predict)
    alzmri serve --port 8000                     # the REST API (model.serve.api), docs at /docs
    alzmri evaluate                              # the published test split -> assets/metrics.json
    alzmri train --epochs 7                      # train (model.training.train); torchrun works as before
    alzmri crossval -- --epochs 7                # 5-fold cross-validation by subject
    alzmri data download | check | split-list    # fetch, split and check the dataset (model.training.data)
    alzmri data subjects | build-guard | build-faithfulness | build-slab-template   # the other shipped assets

Every sub-command's `--help` states its defaults. Each sub-command's module is imported only when it runs:
training pulls in scikit-learn and the hub client, which `alzmri predict` has no use for.
"""
from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "predict": "classify scans from files, folders, zip archives or parquet (streams; torchrun shards)",
    "serve": "serve the prediction REST API with uvicorn",
    "evaluate": "evaluate the shipped model on the published test split -> assets/metrics.json",
    "train": "train the ResNet-34 stage classifier",
    "crossval": "cross-validate the training recipe by subject -> assets/crossval.json",
    "data": "fetch, split and check the dataset; rebuild subjects, the guard and the faithfulness table",
}
DATA_BUILDERS = {
    "subjects": "recover the 200 subjects -> assets/subjects.csv",
    "build-guard": "fit the out-of-distribution guard -> assets/trust_bank.safetensors, assets/trust.json",
    "build-faithfulness": "score the explanation methods -> assets/faithfulness.json",
    "build-slab-template": "the per-position template that finds a volume's slab -> assets/slab_template.safetensors",
}


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


def data(argv: list[str]) -> int:
    if argv and argv[0] == "subjects":
        from model.training.subjects import main
        return main(argv[1:])
    if argv and argv[0] == "build-guard":
        from model.training.build_guard import main
        return main(["build", *argv[1:]])
    if argv and argv[0] == "build-slab-template":
        from model.training.build_slab_template import main
        return main(argv[1:])
    if argv and argv[0] == "build-faithfulness":
        from model.training.build_faithfulness import main
        return main(argv[1:])
    from model.training.data import main
    if not argv or argv[0] in ("-h", "--help"):
        print("also: " + "; ".join(f"alzmri data {k}: {v}" for k, v in DATA_BUILDERS.items()) + "\n")
    return main(argv)


def run(command: str, argv: list[str]) -> int:
    """Hand `argv` to the sub-command's own parser (imported here, when it runs: see the module docstring)."""
    if command == "predict":
        from model.serve.predict import main
        return main(argv)
    if command == "evaluate":
        from model.qualify.evaluate import main
        return main(argv)
    if command == "train":
        from model.training.train import cli
        return cli(argv)
    if command == "crossval":
        from model.training.crossval import main
        return main(argv)
    return {"serve": serve, "data": data}[command](argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="alzmri", description="One command line for the whole project.",
                                     epilog="`alzmri COMMAND --help` gives a command's options and their defaults.")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND",
                        help="; ".join(f"{k}: {v}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1] or ["--help"])
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
