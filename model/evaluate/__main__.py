"""`python -m model.evaluate`: hands over to `model.qualify.evaluate`."""
from model.qualify.evaluate import main

raise SystemExit(main())
