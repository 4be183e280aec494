"""`python -m model.train` (and `torchrun -m model.train`) keeps working for scripts written before the
sub-packages: it runs `model.training.train`, as `alzmri train` does. Nothing else lives here."""
