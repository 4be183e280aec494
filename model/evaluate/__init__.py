"""`python -m model.evaluate` (and `torchrun -m model.evaluate`) keeps working for scripts written before the
sub-packages: it runs `model.qualify.evaluate`, as `alzmri evaluate` does. Nothing else lives here."""
