"""`python -m model.predict`: hands over to `model.serve.predict`."""
from model.serve.predict import main

raise SystemExit(main())
