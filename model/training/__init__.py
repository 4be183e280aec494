"""What builds the shipped assets: data download and splitting, subject recovery, training,
cross-validation and the builders of the guard and the faithfulness table. Nothing outside this package
imports it (tests/test_layout.py)."""
