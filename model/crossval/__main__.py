"""`python -m model.crossval`: hands over to `model.training.crossval`."""
from model.training.crossval import main

raise SystemExit(main())
