"""Many users at once on this machine: browser sessions on the dashboard, and clients of the prediction API.

    python -m benchmarks.load_test [--sessions 10] [--clients 50] [--requests-per-client 2] [--quick]
                                   [--out artifacts/load_test.json]

Starts one `streamlit run` server and one `uvicorn model.serve.api:app` server (as `make app` and `make api` do), then

(a) drives --sessions pages of one Chromium at once (one browser context each, Playwright's async API), each
    uploading a different synthetic head (drawn like the tests' `test_slices`) to the Classify page and reading
    back the predicted stage and its calibrated probability; latency: from the file handed to the uploader to
    the stage on screen;
(b) runs --clients concurrent API clients (httpx.AsyncClient, asyncio.gather), each posting its own scan
    --requests-per-client times to /v1/predict. A 503 is retried after its Retry-After, as a client should; the
    latency counts from the first try.

Each phase starts with one session or request alone, not counted (the dashboard loads the model on its first
session; the API at startup).
Every answer is checked against the Predictor's own for that scan, computed here. Prints latency p50/p95/p99
and max, throughput, errors, and each server's resident memory (VmRSS) before and after; writes all of it as
JSON to --out. Bounded: --timeout seconds per phase. Needs Debian's chromium (`make browser`); not part of the
test suite (tests/model/test_api.py runs the API clients against a real server, three of them, as a smoke test).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES
from model.reports.record import png_bytes
from tests.dashboard.live import CHROMIUM, CHROMIUM_ARGS, IDLE, ROOT, free_port, streamlit_server

PROB_TOLERANCE = 1e-5  # the server's and this process's CPU kernels may round the last float bits differently


# ---------------------------------------------------------------------------------------------- scans, answers


def synthetic_heads(n: int, seed: int = 1) -> list[np.ndarray]:
    """n different uint8 (128, 128) axial 'slices', drawn as tests/conftest.py draws `test_slices`: a skull ring,
    gyri, two ventricles that widen with the stage, noise; each with its own shape, stage and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    heads = []
    for i in range(n):
        stage = i % 4
        a, b = rng.uniform(0.78, 0.86), rng.uniform(0.88, 0.95)
        r = (x / a) ** 2 + (y / b) ** 2
        img = np.where(r < 1, 90.0, 0.0) + np.where((r > 0.82) & (r < 1), 90.0, 0.0)
        img += np.where(r < 0.6, 50.0 * np.cos(9 * np.arctan2(y, x) + rng.uniform(0, 6)) ** 2, 0.0)
        w = 0.08 + 0.05 * stage + rng.uniform(-0.02, 0.02)
        img = np.where(((np.abs(x) - 0.12) / w) ** 2 + (y / 0.35) ** 2 < 1, 15.0, img)
        img += rng.normal(0, 6, img.shape)
        heads.append(np.clip(img, 0, 255).astype(np.uint8))
    return heads


def expected_answers(predictor, scans: list[bytes]) -> list[dict]:
    """The Predictor's own answer for each PNG, read as the app and the API read it: {label, probabilities}."""
    from model.scans.scan_io import open_upload

    out = []
    for i, data in enumerate(scans):
        p = predictor.predict_one(open_upload([(f"scan_{i:03d}.png", data)]).image)
        out.append({"label": p.label, "probabilities": list(p.probabilities)})
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency_summary(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


# ---------------------------------------------------------------------------------------------- the API server


@contextlib.contextmanager
def api_server(env: dict | None = None, timeout: float = 180, log_path: Path | None = None):
    """Yield (base_url, process, seconds_to_healthy) for `uvicorn model.serve.api:app`, started as `make api` starts it.
    Its output goes to log_path (default: a temporary file), never to a pipe nobody reads."""
    import httpx

    port = free_port()
    log_path = log_path or Path(tempfile.mkstemp(prefix="api_", suffix=".log")[1])
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, **(env or {})}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "model.serve.api:app", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API server exited early:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"the API did not become healthy in {timeout:g} s")
            time.sleep(0.2)
        yield url, proc, time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _within(seconds: float, coroutines: list) -> list:
    """Run the coroutines at once; those not done after `seconds` are cancelled and give None."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    _, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [None if task in pending else task.result() for task in tasks]


def _check(body: dict, want: dict, name: str) -> bool:
    got = [body["probabilities"][n] for n in CLASS_NAMES]
    return (body.get("file") == name and body.get("label") == want["label"]
            and max(abs(a - b) for a, b in zip(got, want["probabilities"])) <= PROB_TOLERANCE)


async def _client(http, url: str, i: int, data: bytes, want: dict, repeats: int, out: dict) -> None:
    name = f"scan_{i:03d}.png"
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _attempt in range(60):
            try:
                r = await http.post(url + "/v1/predict", files={"file": (name, data, "image/png")})
            except Exception as exc:  # a refused connection, a timeout: one error, reported by its type
                out["errors"].append(type(exc).__name__)
                break
            if r.status_code == 503:
                out["rejected_503"] += 1
                await asyncio.sleep(float(r.headers.get("retry-after", 1)))
                continue
            out["latency"].append(time.perf_counter() - t0)
            if r.status_code != 200:
                out["errors"].append(f"HTTP {r.status_code}")
            elif not _check(r.json(), want, name):
                out["wrong"] += 1
            break


async def _api_phase(url: str, scans: list[bytes], answers: list[dict], clients: int, repeats: int,
                     timeout: float) -> dict:
    import httpx

    out = {"latency": [], "errors": [], "wrong": 0, "rejected_503": 0}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        warm = {"latency": [], "errors": [], "wrong": 0, "rejected_503": 0}  # one request alone, not counted
        await _client(http, url, 0, scans[0], answers[0], 1, warm)
        if warm["errors"] or warm["wrong"]:
            raise RuntimeError(f"the warm-up request failed: {warm}")
        t0 = time.perf_counter()
        await _within(timeout, [_client(http, url, i, scans[i % len(scans)], answers[i % len(scans)], repeats, out)
                                 for i in range(clients)])
        wall = time.perf_counter() - t0
    unfinished = clients * repeats - len(out["latency"]) - len(out["errors"])
    out["errors"] += [f"not finished within the {timeout:g} s phase limit"] * unfinished
    done = len(out["latency"])
    return {"warm_up_request_ms": round(warm["latency"][0] * 1000), "clients": clients,
            "requests": clients * repeats, "answered": done, "wrong": out["wrong"],
            "errors": len(out["errors"]), "error_kinds": sorted(set(out["errors"])),
            "rejected_503_then_retried": out["rejected_503"], "wall_s": round(wall, 2),
            "throughput_per_s": round(done / wall, 2), **latency_summary(out["latency"])}


def api_clients(url: str, scans: list[bytes], answers: list[dict], *, clients: int, requests_per_client: int = 1,
                timeout: float = 600) -> dict:
    """(b): `clients` concurrent clients, client i posting scans[i] (as scan_<i>.png) `requests_per_client` times.
    Returns counts (answered, wrong, errors, 503s retried), latency percentiles and throughput."""
    return asyncio.run(_api_phase(url, scans, answers, clients, requests_per_client, timeout))


# ---------------------------------------------------------------------------------------------- browser sessions


async def _session(browser, url: str, path: Path, want: dict, timeout_ms: float) -> dict:
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        context.set_default_timeout(timeout_ms)
        page = await context.new_page()
        await page.goto(url, wait_until="domcontentloaded")
        await page.get_by_text("Classify a scan").first.wait_for(timeout=timeout_ms)
        await page.wait_for_selector(IDLE, timeout=timeout_ms)
        t0 = time.perf_counter()
        await page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(path))
        metric = page.locator("[data-testid='stMetric']").filter(has_text="Predicted stage")
        await metric.wait_for(timeout=timeout_ms)
        caption = page.get_by_text(re.compile(r"^Calibrated probability")).first
        await caption.wait_for(timeout=timeout_ms)
        latency = time.perf_counter() - t0
        await page.wait_for_timeout(150)
        await page.wait_for_selector(IDLE, timeout=timeout_ms)
        stage = (await metric.locator("[data-testid='stMetricValue']").inner_text()).strip()
        shown = re.search(r"Calibrated probability ([\d.]+)%", await caption.inner_text()).group(1)
        right = (stage == DISPLAY_NAMES[want["label"]]
                 and shown == f"{want['probabilities'][want['label']] * 100:.1f}")
        return {"latency": latency, "stage": stage, "probability_shown": f"{shown}%", "right": right}
    except Exception as exc:  # reported per session, by type; the others go on
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    finally:
        await context.close()


async def _browser_phase(url: str, paths: list[Path], answers: list[dict], timeout: float, warm: tuple) -> dict:
    """warm: (path, answer) of one session run first, alone and not counted, so that the server has loaded the
    model (st.cache_resource) before the concurrent sessions start."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            first = await _session(browser, url, *warm, timeout * 1000)
            if "error" in first:
                raise RuntimeError(f"the warm-up session failed: {first['error']}")
            t0 = time.perf_counter()
            results = await _within(timeout, [_session(browser, url, path, want, timeout * 1000)
                                              for path, want in zip(paths, answers)])
            results = [r or {"error": f"not finished within the {timeout:g} s phase limit"} for r in results]
            wall = time.perf_counter() - t0
        finally:
            await browser.close()
    latencies = [r["latency"] for r in results if "latency" in r]
    return {"warm_up_session_ms": round(first["latency"] * 1000), "sessions": len(paths), "answered": len(latencies),
            "wrong": sum(not r.get("right", True) for r in results), "errors": sum("error" in r for r in results),
            "error_kinds": sorted({r["error"] for r in results if "error" in r}), "wall_s": round(wall, 2),
            "throughput_per_s": round(len(latencies) / wall, 2), **latency_summary(latencies),
            "shown": [{k: r.get(k) for k in ("stage", "probability_shown")} for r in results]}


# ---------------------------------------------------------------------------------------------- the run


def run(args) -> dict:
    from model.core.inference import Predictor

    n = max(args.sessions, args.clients)
    scans = [png_bytes(head) for head in synthetic_heads(n + 1)]  # the last one warms the dashboard up
    answers = expected_answers(Predictor.from_assets(device="cpu"), scans)
    folder = Path(tempfile.mkdtemp(prefix="load_test_"))
    paths = []
    for i in [*range(args.sessions), n]:
        paths.append(folder / f"session_{i:02d}.png")
        paths[-1].write_bytes(scans[i])
    api_env = {"ALZ_MRI_API_MAX_IN_FLIGHT": str(args.max_in_flight)} if args.max_in_flight else {}
    api_env["ALZ_MRI_API_KEY"] = ""
    with contextlib.ExitStack() as servers:
        st_url, st_proc, st_ready = servers.enter_context(streamlit_server(timeout=180)) if args.sessions \
            else (None, None, 0.0)
        api_url, api_proc, api_ready = servers.enter_context(api_server(api_env, log_path=folder / "api.log"))

        def memory() -> dict:
            return {"streamlit_mb": round(rss_mb(st_proc.pid)) if st_proc else None,
                    "api_mb": round(rss_mb(api_proc.pid))}

        before = memory()
        print(f"servers healthy: streamlit {st_ready:.1f} s, API {api_ready:.1f} s; RSS {before} MB", flush=True)
        load_before = os.getloadavg()
        browser = asyncio.run(_browser_phase(st_url, paths[:-1], answers[:args.sessions], args.timeout,
                                             (paths[-1], answers[n]))) if args.sessions else None
        middle = memory()
        api = api_clients(api_url, scans, answers, clients=args.clients, requests_per_client=args.requests_per_client,
                          timeout=args.timeout) if args.clients else None
        after = memory()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
            "load_average_1min": {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)},
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "browser": browser, "api": api,
            "rss_mb": {"before": before, "after_browser_sessions": middle, "after_api_clients": after}}


def print_table(result: dict) -> None:
    rows = [("browser sessions (upload -> stage on screen)", result["browser"]),
            ("API clients (POST /v1/predict)", result["api"])]
    print(f"\n{'':46} {'answered':>8} {'wrong':>5} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'per s':>6}")
    for label, r in rows:
        if r:
            cells = [r[k] if r[k] is not None else "-" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            print(f"{label:46} {r['answered']:>8} {r['wrong']:>5} {r['errors']:>6} "
                  + " ".join(f"{c:>8}" for c in cells) + f" {r['throughput_per_s']:>6}")
            for kind in r["error_kinds"]:
                print(f"    error: {kind}")
    if result["api"]:
        print(f"API: {result['api']['rejected_503_then_retried']} answers of 503 (busy), each retried after "
              "Retry-After")
    m = result["rss_mb"]
    print(f"RSS MB, streamlit: {m['before']['streamlit_mb']} before, {m['after_browser_sessions']['streamlit_mb']} "
          f"after the sessions, {m['after_api_clients']['streamlit_mb']} at the end; API: {m['before']['api_mb']} "
          f"before, {m['after_browser_sessions']['api_mb']} after the sessions, {m['after_api_clients']['api_mb']} "
          "after the clients")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent browser sessions (default: 10)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients (default: 50)")
    parser.add_argument("--requests-per-client", type=int, default=2, help="requests each client sends (default: 2)")
    parser.add_argument("--max-in-flight", type=int, default=0,
                        help="the API's in-flight limit ($ALZ_MRI_API_MAX_IN_FLIGHT; default: 0, the API's own)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each phase may take (default: 600)")
    parser.add_argument("--quick", action="store_true", help="2 sessions, 4 clients, 1 request each: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("artifacts/load_test.json"),
                        help="where to write the JSON (default: artifacts/load_test.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.sessions, args.clients, args.requests_per_client = 2, 4, 1
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"wrote {args.out}")
    bad = [r for r in (result["browser"], result["api"]) if r and (r["wrong"] or r["errors"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
