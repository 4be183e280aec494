# Two commands do everything on a fresh machine:
#   make app    set up, then start the dashboard on http://localhost:8501
#   make test   set up (Python packages and Debian's Chromium), then run every test
# The same model as a REST API (model/serve/api.py; docs at /docs; $ALZ_MRI_API_KEY to require a key):
#   make api    set up, then serve the prediction API on http://127.0.0.1:8000 (API_PORT=8100 make api)
# One more fetches the dataset (without it, `make test` skips the tests that need it):
#   make data   download Falah/Alzheimer_MRI into $ALZ_MRI_DATA (default ../shared/data/alzheimer_mri),
#               split it as assets/split.csv says and check it; a copy already there is only checked
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
API_PORT ?= 8000

.PHONY: app api test data runs setup setup-test browser benchmark clean

# The project itself is installed editable, so `model`, `dashboard` and `analysis` import from anywhere.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

setup-test: setup browser

# Streamlit runs each script run in a new thread; glibc's per-thread malloc arenas
# then grow the server by ~300 MB over 100 uploads. Two arenas keep it flat.
app: setup
	MALLOC_ARENA_MAX=2 $(PY) -m streamlit run dashboard/app.py --server.port $(PORT)

# One uvicorn process: requests in flight are capped in the app, model work runs in its thread pool.
api: setup
	MALLOC_ARENA_MAX=2 $(PY) -m uvicorn model.serve.api:app --host 127.0.0.1 --port $(API_PORT)

test: setup-test
	$(PY) -m pytest

# MLflow's UI over the local tracking store of every training and cross-validation run (runs/mlflow.db);
# set MLFLOW_TRACKING_URI to browse a team's server instead. RUNS_PORT=5001 make runs picks another port.
# The UI comes with the full mlflow package, which pins pyarrow below the release the dataset's parquet files
# were written with, so it gets a small venv of its own; the project's venv tracks runs with mlflow-skinny.
RUNS_PORT ?= 5000
RUNS_VENV ?= .venv-runs
$(RUNS_VENV)/.installed:
	$(PYTHON) -m venv $(RUNS_VENV)
	$(RUNS_VENV)/bin/python -m pip install --quiet "mlflow>=3.0"
	touch $@

runs: $(RUNS_VENV)/.installed
	$(RUNS_VENV)/bin/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/runs/mlflow.db} --port $(RUNS_PORT)

data: setup
	$(VENV)/bin/alzmri-train data download --skip-existing

benchmark: setup
	$(PY) -m benchmarks.bench_pipeline
	$(PY) -m benchmarks.bench_input_channels

clean:
	rm -rf $(VENV) $(RUNS_VENV) .pytest_cache artifacts
