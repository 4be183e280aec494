"""`python -m model.crossval` (and `torchrun -m model.crossval`) keeps working for scripts written before the
sub-packages: it runs `model.training.crossval`, as `alzmri crossval` does. Nothing else lives here."""
