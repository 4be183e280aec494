"""`alzmri` (the product) and `alzmri-train` (what builds the assets): declared in pyproject.toml, dispatching to
each command, every default stated."""
import argparse
import json
import tomllib

import pytest

from model import cli
from model.training import cli as train_cli
from model.qualify.evaluate import get_args_parser as evaluate_parser
from model.serve.predict import get_args_parser as predict_parser
from model.training.crossval import get_args_parser as crossval_parser
from model.training.subjects import get_args_parser as subjects_parser
from model.training.train import get_args_parser as train_parser
from tests.conftest import ROOT, png_bytes


def silent_options(name: str, parser: argparse.ArgumentParser) -> list[str]:
    """Options whose help states no default (flags included: their default is 'off')."""
    return [a.option_strings[-1] for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)
            and "default" not in (a.help or "").lower()]


def test_the_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"alzmri": "model.cli:main", "alzmri-train": "model.training.cli:main"}


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(f"{name}:" in out for name in cli.COMMANDS)
    with pytest.raises(SystemExit) as exc:
        cli.main(["nonsense"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_training_help_lists_every_command_and_builder(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(f"{name}:" in out for name in train_cli.COMMANDS)
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["data", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(f"alzmri-train data {name}:" in out for name in train_cli.DATA_BUILDERS)
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["predict"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--epochs", "1"], ["crossval", "--folds", "1"], ["data", "check"]])
def test_a_training_command_given_to_alzmri_says_where_it_went(argv, capsys):
    assert cli.main(argv) == 2
    assert f"run `alzmri-train {' '.join(argv)}`" in capsys.readouterr().err


def test_training_commands_reach_their_parsers(capsys):
    """Each sub-command gets its own arguments: a bad value is refused by that command, with its message."""
    assert train_cli.main(["crossval", "--folds", "1"]) == 2
    assert "--folds must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["train", "--optimizer"])
    assert exc.value.code == 2 and "--optimizer: expected one argument" in capsys.readouterr().err


@pytest.mark.parametrize("name, parser", [("predict", predict_parser), ("evaluate", evaluate_parser),
                                          ("train", train_parser), ("crossval", crossval_parser),
                                          ("subjects", subjects_parser)])
def test_every_option_states_its_default(name, parser):
    assert not silent_options(name, parser()), name


def test_serve_help_states_its_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "(default: 127.0.0.1)" in out and "(default: 8000)" in out


def test_predict_runs_through_the_dispatcher(tiny_assets, test_slices, tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    out = tmp_path / "rows.json"
    code = cli.main(["predict", str(tmp_path / "a.png"), "--out", str(out), "--no-guard", "--quiet",
                     "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                     "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"])
    assert code == 0 and json.loads(out.read_text())[0]["schema_version"] == "1"


def test_the_check_finds_an_option_that_hides_its_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=3, help="how big")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    assert silent_options("x", parser) == ["--size"]
