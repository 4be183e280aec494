"""`python -m model.predict` (and `torchrun -m model.predict`) keeps working for scripts written before the
sub-packages: it runs `model.serve.predict`, as `alzmri predict` does. Nothing else lives here."""
