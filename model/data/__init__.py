"""`python -m model.data` (and `torchrun -m model.data`) keeps working for scripts written before the
sub-packages: it runs `model.training.data`, as `alzmri data` does. Nothing else lives here."""
