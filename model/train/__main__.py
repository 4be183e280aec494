"""`python -m model.train`: hands over to `model.training.train`."""
from model.training.train import cli

raise SystemExit(cli())
