"""The prediction API: the app's Predictor, scan reader and guard behind FastAPI, served by uvicorn.

    make api                                   # uvicorn model.serve.api:app on http://127.0.0.1:8000 (API_PORT=...)
    curl -F file=@slice.png http://127.0.0.1:8000/v1/predict
    curl -F file=@brain.hdr -F file=@brain.img 'http://127.0.0.1:8000/v1/predict?slice=80'
    curl -F file=@slice.png 'http://127.0.0.1:8000/v1/explain?target=Non_Demented' -o gradcam.png
    curl -F files=@a.png -F files=@b.dcm http://127.0.0.1:8000/v1/predict/batch

Endpoints (interactive documentation at /docs): POST /v1/predict, POST /v1/explain, POST /v1/predict/batch,
POST /v1/predict/subject (a volume staged as a subject from its 32 training-position slices), GET /v1/model,
GET /healthz. Every answer is what the Classify page shows for the same file: `open_upload`
reads it (after `group_uploads` made one scan of its files), `model.qualify.trust.assess` predicts it with the spread
over test-time variants and the guard's report, `model.qualify.explain` draws Grad-CAM.

Limits (the same as the app's, checked before the work they guard), streaming uploads that never touch the disk,
and the JSON error bodies live in `model.serve.transport`.

Model work runs in the thread pool (the Predictor's lock keeps shared Grad-CAM hooks correct), so the event loop
keeps answering health checks and refusing overload while a scan is classified.

Errors are JSON, {"error": {"code": ..., "message": ...}} (`model.serve.transport` lists them). Set $ALZ_MRI_API_KEY
to require the header X-API-Key on every /v1 endpoint.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import fastapi_offline
import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from model.core.constants import CLASS_NAMES, CROSSVAL_PATH, DISPLAY_NAMES, METRICS_PATH, NUM_CLASSES
from model.core.inference import shipped_predictor
from model.core.recipe import crossval_describes, floors_of
from model.core.network import CAM_LAYERS, default_cam_layer
from model.qualify.explain import COLORMAPS, METHOD_NOTES, METHODS, explain, overlay
from model.qualify.faithfulness import default_method, read_table
from model.qualify.trust import TRUST_PATH, TrustBank, TrustBankError
from model.reports.record import ErrorDetail, Failed, Result, SubjectResult, png_bytes
from model.scans.scan_io import ACCEPTED, MAX_UPLOAD_BYTES, group_uploads
from model.serve.pipeline import CHUNK, assess_opened, open_item, stage_subject
from model.serve.transport import ApiError, Limits, check_declared_size, handle_errors, read_uploads, scan_error

API_KEY_ENV_VAR = "ALZ_MRI_API_KEY"  # when set, every /v1 endpoint wants it in the X-API-Key header
MAX_IN_FLIGHT_ENV_VAR = "ALZ_MRI_API_MAX_IN_FLIGHT"  # `uvicorn model.serve.api:app` only; create_app takes an argument
DEFAULT_MAX_IN_FLIGHT = 16  # model work is serialised by the Predictor's lock; more only waits, holding memory
RETRY_AFTER_S = 1  # what a 503 asks a client to wait
INTENDED_USE = {
    "use": "Research only: methods research, teaching and building health software around such a model.",
    "not_for": "Not a medical device; not for the diagnosis, screening or staging of any patient.",
    "out_of_scope": ["other brain diseases", "other MRI sequences, orientations or preprocessing than OASIS-1's",
                     "3D analysis of a volume (a volume is read as one axial slice, or as the 32 axial slices that "
                     "match the training slices when staged as a subject)"],
}
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- responses


class ErrorResponse(BaseModel):
    error: ErrorDetail


# One scan's result and a scan that could not be read: `Result` and `Failed`, declared once in model.reports.record.


class ExplainMap(BaseModel):
    file: str
    target: str = Field(description="class name the map explains")
    target_display_name: str
    method: str = Field(description="explanation method (see /v1/model: explain.methods)")
    settings: dict = Field(description="the method's settings: target, layer, steps, window, ...")
    layer: str
    shape: list[int] = Field(description="[height, width] of the map: the slice as read (128 x 128)")
    map: list[list[float]] = Field(description="saliency in [0, 1], rows top to bottom, 3 decimals")
    raw_max: float = Field(description="largest value before scaling; 0 means no positive evidence")
    model_sha256: str


class Health(BaseModel):
    status: Literal["ok"]
    model_loaded: bool
    device: str
    guard: bool = Field(description="whether the out-of-distribution guard is loaded")


_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 415, 422, 503)}


def _upload_body(field: str, what: str) -> dict:
    """The request body as /docs should show it (the endpoints read the stream themselves, see the module)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [field],
        "properties": {field: {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": what}}}}}}}


# ---------------------------------------------------------------------------------------------- the service


class Service:
    """What every request shares: the model, the guard, the limits and the in-flight slots."""

    def __init__(self, predictor, bank: TrustBank | None, limits: Limits, max_in_flight: int, api_key: str):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.predictor, self.bank, self.limits, self.api_key = predictor, bank, limits, api_key
        self.max_in_flight = max_in_flight
        # Acquired only when a place is free (a full house is refused at once): it never waits, so it never
        # binds to one event loop and a request is never queued behind it.
        self.slots = asyncio.Semaphore(max_in_flight)
        self._model_info: dict | None = None

    @asynccontextmanager
    async def slot(self):
        """One of the in-flight places, or 503 at once when all are taken."""
        if self.slots.locked():
            raise ApiError(503, "busy", f"the server is working on {self.max_in_flight} requests; retry in "
                                        f"{RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})
        async with self.slots:
            yield

    # -- model work, run in the thread pool
    def open_one(self, files: list[tuple[str, bytes]], slice_number: int | None):
        """The one scan these files make (`model.serve.pipeline.Opened`), at `slice_number` (1-based; None: the
        middle one)."""
        items = group_uploads(files)
        if len(items) != 1:
            raise ApiError(400, "not_one_scan", f"these {len(files)} files are {len(items)} scans, not one (only an "
                                                "Analyze .hdr + .img pair or the files of one DICOM series go "
                                                "together); send them to /v1/predict/batch")
        opened = open_item(items[0], slice=slice_number)
        if opened.scan is not None:
            return opened
        if slice_number is not None:  # was it the slice number? say it the way the query counts
            whole = open_item(items[0])
            if whole.scan is not None and slice_number > whole.scan.n_slices:
                scan = whole.scan
                raise ApiError(422, "invalid_slice", f"{scan.name}: there is no slice {slice_number}; this scan "
                                                     f"({scan.kind}) has {scan.n_slices}, numbered from 1 to "
                                                     f"{scan.n_slices}")
        raise scan_error(opened.error)

    def predict(self, files: list[tuple[str, bytes]], slice_number: int | None) -> dict:
        return assess_opened([self.open_one(files, slice_number)], predictor=self.predictor, bank=self.bank)[0].record()

    def predict_batch(self, files: list[tuple[str, bytes]]) -> list[dict]:
        """One entry per scan, in input order (a scan sits where its first file was): a result, or the error."""
        opened = [open_item(item) for item in group_uploads(files)]
        return [result.record() for start in range(0, len(opened), CHUNK)
                for result in assess_opened(opened[start:start + CHUNK], predictor=self.predictor, bank=self.bank)]

    def predict_subject(self, files: list[tuple[str, bytes]], subject: str | None) -> dict:
        """One subject (`model.serve.pipeline.stage_subject`): a volume's slab, or the slices sent; 422 with the
        reason when nothing can be staged."""
        result = stage_subject(files, predictor=self.predictor, bank=self.bank, subject=subject)
        if isinstance(result, Failed):
            raise ApiError(422, result.error.code, result.error.message)
        return result.record()

    def explain(self, files, slice_number: int | None, target: int | None, layer: str, fmt: str, alpha: float,
                colormap: str, method: str = "gradcam") -> Response | dict:
        scan = self.open_one(files, slice_number).scan
        result = explain(self.predictor, scan.image, target=target, layer=layer, method=method)
        name = CLASS_NAMES[result.target]
        if fmt == "png":
            picture = png_bytes(overlay(scan.image, result.heatmap, alpha=alpha, colormap=colormap))
            return Response(picture, media_type="image/png", headers={"X-Target": name, "X-Layer": result.layer,
                                                                     "X-Method": result.method})
        return {"file": scan.name, "target": name, "target_display_name": DISPLAY_NAMES[result.target],
                "method": result.method, "settings": result.settings(),
                "layer": result.layer, "shape": list(result.heatmap.shape),
                "map": np.round(result.heatmap.astype(np.float64), 3).tolist(), "raw_max": result.raw_max,
                "model_sha256": self.predictor.sha256}

    def model_info(self) -> dict:
        if self._model_info is None:
            self._model_info = describe_model(self.predictor, self.bank, self.limits)
        return self._model_info


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _with_ci(entry: dict, key: str) -> dict:
    return {key: entry.get(key), f"{key}_ci95": entry.get("ci95", {}).get(key)}


def describe_model(predictor, bank: TrustBank | None, limits: Limits, crossval_path: Path = CROSSVAL_PATH,
                   metrics_path: Path = METRICS_PATH, trust_path: Path = TRUST_PATH) -> dict:
    """What /v1/model says: the model, its headline figures from the shipped files, the guard and the limits."""
    config = getattr(predictor, "config", {}) or {}
    crossval, metrics = _read_json(crossval_path), _read_json(metrics_path)
    trust = _read_json(trust_path) if bank is not None else None
    figures: dict[str, Any] = {}
    if crossval:
        subject = crossval["network"]["subject"]
        figures["new_subjects"] = {
            "what": "5-fold cross-validation by subject: each subject staged by a network that never saw that "
                    "brain; a subject's stage is the mean of its slices' calibrated probabilities",
            "n_subjects": subject.get("n"), **_with_ci(subject, "any_dementia_auc"),
            **_with_ci(subject, "balanced_accuracy"),
            "describes_this_model": crossval_describes(config, crossval),
            "floors": [{k: v for k, v in floor.items() if k != "key"} | {"method": floor["key"]}
                       for floor in floors_of(crossval)],
            "floors_mean": "methods with no deep learning scored on the same folds; auc_difference: this network's "
                           "AUC minus the floor's, paired over the same subjects, with its 95% interval"}
    if metrics:
        figures["published_test_split"] = {
            "what": "slice-level accuracy on the dataset's published test split",
            "caveat": "every test brain is also in training: this measures recognising a seen brain, not staging "
                      "a new one",
            "n_slices": metrics.get("n"), **_with_ci(metrics, "accuracy"),
            "describes_this_model": metrics.get("model_sha256") == predictor.sha256}
    guard = {"loaded": bank is not None}
    if trust:
        guard["false_alarm_rate"] = trust.get("false_alarms", {}).get("cross_fitted")
        guard["false_alarm_rate_means"] = ("share of new subjects' slices flagged out of distribution "
                                           "(thresholds fitted on other subjects)")
    return {"model_sha256": predictor.sha256, "architecture": config.get("arch", "torchvision.models.resnet34"),
            "classes": list(CLASS_NAMES), "display_names": list(DISPLAY_NAMES),
            "temperature": predictor.temperature, "image_size": predictor.image_size, "device": predictor.device_name(),
            "engine": getattr(predictor, "engine", "torch"),
            "explain": {"methods": list(METHODS), "layers": list(CAM_LAYERS.values()),
                        "default_layer": default_cam_layer(predictor.image_size, config),
                        "colormaps": list(COLORMAPS)},
            "figures": figures, "guard": guard, "intended_use": INTENDED_USE,
            "limits": {**asdict(limits), "image_file_bytes": MAX_UPLOAD_BYTES, "readable": ACCEPTED}}


def new_subject_sentence(crossval_path: Path = CROSSVAL_PATH) -> str:
    """What /docs says of the model on brains it never saw, from the shipped figures (not typed here)."""
    crossval = _read_json(crossval_path)
    if not crossval:
        return "no cross-validated figures are shipped with this model."
    auc = crossval["network"]["subject"]["any_dementia_auc"]
    text = f"on brains it never saw the model's subject-level any-dementia AUC is {auc:.2f}"
    floors = floors_of(crossval)
    if floors:
        text += f", against {floors[0]['any_dementia_auc']:.2f} for a {floors[0]['name']} on the same subjects"
    return text + "."


def _shipped_bank() -> TrustBank | None:
    try:
        return TrustBank.load()
    except TrustBankError as exc:
        log.warning("no out-of-distribution guard, answers say 'no guard': %s", exc)
        return None


def _shipped_predictor():
    """The shipped Predictor with $ALZ_MRI_ENGINE (`model.core.inference.shipped_predictor`)."""
    return shipped_predictor()


def _service(request: Request) -> Service:
    return request.app.state.service


# ---------------------------------------------------------------------------------------------- the app


DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI and ReDoc, shipped in the wheel


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files installed with the package (fastapi-offline's copies), never a
    CDN: a server without internet, or a browser behind a hospital proxy, still gets its API documentation."""
    app.mount("/static-docs", StaticFiles(directory=DOCS_ASSETS), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url="/static-docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static-docs/swagger-ui.css",
                                   swagger_favicon_url="/static-docs/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url="/static-docs/redoc.standalone.js",
                              redoc_favicon_url="/static-docs/favicon.png", with_google_fonts=False)


def create_app(predictor=None, bank: TrustBank | None = None, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
               api_key: str | None = None, limits: Limits = Limits()) -> FastAPI:
    """The API around a Predictor.

    predictor: a `model.core.inference.Predictor` (None: the shipped one, loaded and verified once at startup).
    bank: the out-of-distribution guard (None: the shipped one, loaded at startup; when it is missing or altered
    the API still predicts and every answer's flags say "no guard").
    max_in_flight: requests worked on at once; one more gets 503 with Retry-After.
    api_key: required in the X-API-Key header of every /v1 endpoint; None reads $ALZ_MRI_API_KEY, "" or an
    unset variable turns the check off. /healthz and /docs stay open.
    """
    key = os.environ.get(API_KEY_ENV_VAR, "") if api_key is None else api_key
    service = Service(predictor, bank, limits, max_in_flight, key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.predictor is None:
            service.predictor = await anyio.to_thread.run_sync(_shipped_predictor)
        if service.bank is None:
            service.bank = await anyio.to_thread.run_sync(_shipped_bank)
        await anyio.to_thread.run_sync(service.model_info)  # read the figures now, not on the first request
        log.info("model %s on %s (engine %s), guard %s", service.predictor.sha256[:12],
                 service.predictor.device_name(), getattr(service.predictor, "engine", "torch"),
                 "loaded" if service.bank is not None else "missing")
        yield

    app = FastAPI(
        title="Alzheimer MRI staging API", version="1",
        summary="Research use only: not a medical device, not for the diagnosis of any patient.",
        description=(
            "Stages a 2D axial brain MRI slice into four Alzheimer's disease stages with a ResNet-34, with "
            "calibrated probabilities, the spread over test-time variants, an out-of-distribution guard and "
            "Grad-CAM: the same model, scan reader and checks as the research dashboard.\n\n"
            f"**Files.** {ACCEPTED}. One scan may be several files (an Analyze pair, a DICOM series). A volume "
            "is read at one axial slice (the middle one unless `?slice=` picks another); `POST /v1/predict/subject` "
            "stages a NIfTI or Analyze volume as a subject, from the 32 consecutive axial slices that match the "
            "training slices' positions.\n\n"
            f"**Read the answers with the figures in `GET /v1/model`**: {new_subject_sentence()} An answer "
            "flagged unreliable is shown for completeness only.\n\n"
            "**Errors** are JSON `{\"error\": {\"code\", \"message\"}}`. Busy: 503 with Retry-After. With "
            f"`${API_KEY_ENV_VAR}` set on the server, send the key in `X-API-Key`."),
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served below from local files: no CDN, so /docs works offline
    )
    _offline_docs(app)
    app.state.service = service
    handle_errors(app)
    app.include_router(_v1_router(), prefix="/v1")

    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness: is the model loaded")
    async def healthz(request: Request) -> dict:
        service = _service(request)
        loaded = service.predictor is not None
        return {"status": "ok", "model_loaded": loaded, "device": service.predictor.device_name() if loaded else "",
                "guard": service.bank is not None}

    return app


_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description=f"Required only when the server sets ${API_KEY_ENV_VAR}.")


def _require_key(request: Request, given: Annotated[str | None, Security(_key_header)]) -> None:
    """401 unless the X-API-Key header holds the server's key (compared in constant time); open without a key."""
    key = _service(request).api_key
    if not key:
        return
    if not given:
        raise ApiError(401, "missing_api_key", "this server wants an API key in the X-API-Key header")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode("utf-8", "surrogateescape")):
        raise ApiError(401, "invalid_api_key", "the X-API-Key header does not hold this server's key")


SliceQuery = Annotated[int | None, Query(alias="slice", ge=1, le=1_000_000, description=(
    "1-based axial slice of a volume, frame of a multi-frame DICOM or file of a DICOM series; default: the middle "
    "one"))]
Layer = Literal[tuple(CAM_LAYERS.values())]
Colormap = Literal[COLORMAPS]
Method = Literal[tuple(METHODS)]


def _target(target: str | None) -> int | None:
    if target is None or target == "predicted":
        return None
    if target in CLASS_NAMES:
        return CLASS_NAMES.index(target)
    if target.isdigit() and int(target) < NUM_CLASSES:
        return int(target)
    raise ApiError(422, "invalid_target", f"target {target[:40]!r} is not a class; give a class name "
                                          f"({', '.join(CLASS_NAMES)}), its index 0-{NUM_CLASSES - 1}, or leave it "
                                          "out for the predicted stage")


DEFAULT_EXPLAIN_METHOD = default_method(read_table())[0]  # as the Classify page: beats both baselines, least off-brain


def _v1_router() -> APIRouter:
    router = APIRouter(dependencies=[Security(_require_key)], responses={401: {"model": ErrorResponse}})

    @router.post("/predict", response_model=Result, tags=["predict"], responses=_ERRORS,
                 summary="Stage one scan",
                 openapi_extra=_upload_body("file", "one scan: a 2D image, a DICOM file or the files of one DICOM "
                                                    "series, a NIfTI file, or an Analyze .hdr with its .img"))
    async def predict(request: Request, slice_number: SliceQuery = None) -> dict:
        """The stage with calibrated probabilities, the spread over test-time variants, the guard's verdict and
        nearest training slices, and how the file was read: what the dashboard's Classify page shows."""
        service = _service(request)
        check_declared_size(request, service.limits)
        async with service.slot():
            files = await read_uploads(request, service.limits)
            return await run_in_threadpool(service.predict, files, slice_number)

    @router.post("/explain", tags=["predict"], summary="A saliency map for one scan (by default the method the faithfulness table picks)",
                 responses={**_ERRORS, 200: {"content": {"image/png": {}}, "model": ExplainMap,
                                             "description": "the overlay (format=png) or the map (format=json)"}},
                 openapi_extra=_upload_body("file", "one scan, as for /v1/predict"))
    async def explain_scan(
        request: Request,
        slice_number: SliceQuery = None,
        target: Annotated[str | None, Query(max_length=64, description=(
            f"class to explain: a class name ({', '.join(CLASS_NAMES)}) or its index; default: the predicted "
            "stage"))] = None,
        layer: Annotated[Layer | None, Query(description="network layer; default: the model's own "
                                                         "(GET /v1/model, explain.default_layer)")] = None,
        fmt: Annotated[Literal["png", "json"], Query(alias="format", description=(
            "png: the overlay on the slice; json: the map as numbers"))] = "png",
        alpha: Annotated[float, Query(ge=0.0, le=1.0, description="opacity of the overlay")] = 0.45,
        colormap: Annotated[Colormap, Query(description="colour map of the overlay")] = "jet",
        method: Annotated[Method | None, Query(description="; ".join(f"{k}: {v}" for k, v in METHOD_NOTES.items())
                                                  + "; default: the method the held-out faithfulness table picks "
                                                    "(GET /v1/model)")] = None,
    ):
        """Where the network found evidence for a class. Not a lesion map. Integrated gradients and occlusion take
        seconds on a CPU."""
        method = method or DEFAULT_EXPLAIN_METHOD
        service = _service(request)
        target_index = _target(target)
        layer = layer or service.predictor.cam_layer
        check_declared_size(request, service.limits)
        async with service.slot():
            files = await read_uploads(request, service.limits)
            return await run_in_threadpool(service.explain, files, slice_number, target_index, layer, fmt, alpha,
                                           colormap, method)

    @router.post("/predict/batch", response_model=list[Result | Failed], tags=["predict"],
                 responses=_ERRORS, summary="Stage many scans",
                 openapi_extra=_upload_body("files", "many scans; an Analyze pair or the files of one DICOM "
                                                     "series make one scan"))
    async def predict_batch(request: Request) -> list[dict]:
        """One entry per scan, in the order the files were sent: a result as from /v1/predict, or
        {file, files, error} for a scan that could not be read. Every file appears in some entry's `files`.
        Volumes are read at their middle slice."""
        service = _service(request)
        check_declared_size(request, service.limits)
        async with service.slot():
            files = await read_uploads(request, service.limits)
            return await run_in_threadpool(service.predict_batch, files)

    @router.post("/predict/subject", response_model=SubjectResult, tags=["predict"], responses=_ERRORS,
                 summary="Stage one subject: a volume, or several slices",
                 openapi_extra=_upload_body("files", "one subject: a T1 volume (a NIfTI file, or an Analyze .hdr "
                                                     "with its .img, of at least 32 axial slices) or several "
                                                     "slices of that subject"))
    async def predict_subject(
        request: Request,
        subject: Annotated[str | None, Query(max_length=64, description="the subject's id, echoed in the "
                                                                        "answer (default: the first file's name)")]
        = None,
    ) -> dict:
        """The subject's stage, the mean of its slices' calibrated probabilities (the rule the subject-level
        cross-validation figures are for), with each slice's result. A volume is staged on the slab of 32
        consecutive axial slices that matches the training slices' positions (`slab.aligned` false: it does not
        line up, and the stage is unreliable). Several slices are taken as one subject because the caller says
        so; `flags` says when they look like different training subjects."""
        service = _service(request)
        check_declared_size(request, service.limits)
        async with service.slot():
            files = await read_uploads(request, service.limits)
            return await run_in_threadpool(service.predict_subject, files, subject)

    @router.get("/model", tags=["model"], summary="The model, its figures and its intended use")
    async def model_info(request: Request) -> dict:
        """Checksum, label order, calibration temperature, input size; the headline figures from the shipped
        evaluation (new subjects first), the guard's false-alarm rate, intended use and the request limits."""
        return await run_in_threadpool(_service(request).model_info)

    return router


def app_from_env() -> FastAPI:
    """The app `uvicorn model.serve.api:app` serves: the shipped model and guard; $ALZ_MRI_API_KEY and
    $ALZ_MRI_API_MAX_IN_FLIGHT from the environment."""
    raw = os.environ.get(MAX_IN_FLIGHT_ENV_VAR, "")
    if raw and not raw.isdigit():
        raise ValueError(f"${MAX_IN_FLIGHT_ENV_VAR} must be a whole number, got {raw!r}")
    return create_app(max_in_flight=int(raw) if raw else DEFAULT_MAX_IN_FLIGHT)


def __getattr__(name: str):
    """`model.serve.api.app`, built on first access so that importing this module loads nothing."""
    if name == "app":
        globals()["app"] = built = app_from_env()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
