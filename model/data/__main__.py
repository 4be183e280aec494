"""`python -m model.data`: hands over to `model.training.data`."""
from model.training.data import main

raise SystemExit(main())
