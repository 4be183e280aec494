"""`alzmri-train`: the command line that builds the shipped assets (declared in pyproject.toml's [project.scripts]).

    alzmri-train train --epochs 7                  # train (model.training.train); torchrun -m model.training.train
    alzmri-train crossval -- --epochs 7            # 5-fold cross-validation by subject (model.training.crossval)
    alzmri-train data download | check | split-list    # fetch, split and check the dataset (model.training.data)
    alzmri-train data subjects | build-guard | build-faithfulness | build-slab-template   # the other assets

It is a command of its own, apart from `alzmri` (predict, serve, evaluate), so that what serves a user never
imports training (tests/test_layout.py). `python -m model.training COMMAND ...` is the same command. Every
sub-command's `--help` states its defaults; each sub-command's module is imported only when it runs.
"""
from __future__ import annotations

import sys

from model.cli import dispatch

COMMANDS = {
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
        print("also: " + "; ".join(f"alzmri-train data {k}: {v}" for k, v in DATA_BUILDERS.items()) + "\n")
    return main(argv)


def run(command: str, argv: list[str]) -> int:
    """Hand `argv` to the sub-command's own parser (imported here, when it runs)."""
    if command == "train":
        from model.training.train import cli
        return cli(argv)
    if command == "crossval":
        from model.training.crossval import main
        return main(argv)
    return data(argv)


def main(argv: list[str] | None = None) -> int:
    return dispatch(sys.argv[1:] if argv is None else list(argv), "alzmri-train",
                    "Build the shipped assets: train, cross-validate, fetch and prepare the data.", COMMANDS, run,
                    epilog="Predicting, serving and evaluating: `alzmri`.")


if __name__ == "__main__":
    raise SystemExit(main())
