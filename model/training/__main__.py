"""`python -m model.training COMMAND ...`: the same as `alzmri-train COMMAND ...` (model.training.cli)."""
from model.training.cli import main

raise SystemExit(main())
