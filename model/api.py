"""`uvicorn model.api:app` keeps working: the REST API lives in `model.serve.api` (also `alzmri serve`)."""
from model.serve import api as _api


def __getattr__(name: str):
    return getattr(_api, name)  # `app` is built on first access, by model.serve.api
