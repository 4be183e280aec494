"""Serving one scan: the project's engines against the original project's naive way, in the same run.

    python -m benchmarks.bench_serving [--scans 20] [--rounds 2] [--threads N] [--out serving.json] [--quick]

Two measurements, each over distinct test scans, the methods interleaved scan by scan so that all of them
see the same load on a shared machine:

* prediction alone: a decoded uint8 128 x 128 slice in, calibrated probabilities out;
* end to end: PNG bytes in, decoded (model.scans.scan_io), preprocessed, predicted, and explained by Grad-CAM
  (model.qualify.explain, at the shipped size's default layer, for the predicted class).

The baseline is the original project's naive way: for EVERY request the weights are read from the
safetensors file into a freshly built torchvision ResNet-34, which runs eager float32 on the slice resized
to 224 px (the original model card's input size). The original repeated the gray slice into 3 channels; the
shipped weights have one input channel, so the baseline is a 1-channel ResNet-34 at 224 px, which costs the
same to within 5% (benchmarks/bench_input_channels.py). Its end to end decodes the PNG with Pillow and runs
Grad-CAM at layer4 of that network at 224 px.

Against it: `Predictor.predict_one` (PyTorch, eager, channels-last, at the shipped size), and the same
Predictor with the ONNX Runtime and OpenVINO engines (model.core.engine). int8 is not a row: it failed the
held-out check (benchmarks/bench_int8.py). A breakdown of `predict_one` shows where its time goes.
Figures are p50 and p95 in ms and the baseline's p50 over each method's p50. Nothing asserts.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BASELINE_SIZE = 224  # the original model card's input size


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def percentiles(times: list[float]) -> dict[str, float]:
    """p50 and p95 in ms (nearest rank)."""
    ordered = sorted(times)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1e3

    return {"p50": pick(0.5), "p95": pick(0.95), "n": len(ordered)}


# ---------------------------------------------------------------- the naive baseline
def naive_network(weights: Path) -> torch.nn.Module:
    """What the original did per request: read the safetensors file into a fresh torchvision ResNet-34."""
    from safetensors.torch import load_file
    from torchvision.models import resnet34

    net = resnet34(weights=None, num_classes=4)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # the shipped 1 channel
    net.load_state_dict(load_file(str(weights)))  # float16 on disk, copied into the float32 parameters
    return net.eval()


def naive_input(image: np.ndarray) -> torch.Tensor:
    """uint8 (128, 128) -> normalised float32 (1, 1, 224, 224), as Resize + ToTensor + Normalize did."""
    from model.core.constants import MEAN, STD

    x = torch.from_numpy(image).float().div(255.0)[None, None]
    x = F.interpolate(x, size=(BASELINE_SIZE, BASELINE_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return (x - MEAN) / STD


def naive_predict(weights: Path, image: np.ndarray, temperature: float) -> tuple[torch.nn.Module, torch.Tensor,
                                                                                 np.ndarray]:
    net = naive_network(weights)
    x = naive_input(image)
    with torch.no_grad():
        probs = torch.softmax(net(x) / temperature, 1)[0].numpy()
    return net, x, probs


def naive_end_to_end(weights: Path, data: bytes, temperature: float) -> np.ndarray:
    """PNG bytes -> Pillow decode -> the naive prediction -> Grad-CAM at layer4 at 224 px. Returns the map."""
    from captum.attr import LayerAttribution, LayerGradCam
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        image = np.array(img.convert("L"))
    net, x, probs = naive_predict(weights, image, temperature)
    attr = LayerGradCam(net, net.layer4).attribute(x.requires_grad_(True), target=int(probs.argmax()),
                                                   relu_attributions=True)
    heat = LayerAttribution.interpolate(attr, tuple(image.shape), interpolate_mode="bilinear")[0, 0]
    return heat.detach().numpy()


# ---------------------------------------------------------------- the project
def end_to_end(predictor, data: bytes):
    """PNG bytes -> model.scans.scan_io -> Predictor.predict_one -> Grad-CAM for the predicted class."""
    from model.qualify.explain import explain
    from model.scans.scan_io import open_scan

    image = open_scan(data, "scan.png").image
    prediction = predictor.predict_one(image)
    return prediction, explain(predictor, image, target=prediction.label,
                               layer=predictor.cam_layer)


def breakdown(predictor, images: list[np.ndarray], pngs: list[bytes], repeat: int) -> dict[str, float]:
    """Median ms of each stage of `predict_one` and of the end to end (PyTorch), measured one stage at a time."""
    from model.qualify.explain import explain
    from model.core.inference import as_batch
    from model.core.prediction import Prediction
    from model.core.preprocess import to_input
    from model.scans.scan_io import open_scan

    def median_ms(fn) -> float:
        fn()
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e3)

    def pick(i: int = 0) -> np.ndarray:
        return images[i % len(images)]

    x = to_input(as_batch(pick()), predictor.image_size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    logits = predictor.logits(pick())
    layer = predictor.cam_layer

    def forward(_=0, inp=x_cl):
        with torch.inference_mode():
            predictor.net(inp)

    def lock(_=0):
        with predictor.lock:
            pass

    def finish(_=0):
        probs = torch.softmax(logits / predictor.temperature, dim=1)
        return [Prediction(tuple(float(p) for p in row), int(row.argmax())) for row in probs]

    return {
        "predict_one, whole": median_ms(lambda i=0: predictor.predict_one(pick(i))),
        "  as_batch + to_input (resize to the network's size, normalise)":
            median_ms(lambda i=0: to_input(as_batch(pick(i)), predictor.image_size)),
        "  channels-last copy of the input": median_ms(lambda i=0: x.contiguous(memory_format=torch.channels_last)),
        "  lock acquire + release": median_ms(lock),
        "  net.eval() (predict_logits calls it)": median_ms(lambda i=0: predictor.net.eval()),
        "  network forward (channels-last)": median_ms(forward),
        "  network forward (contiguous input, for comparison)": median_ms(lambda i=0: forward(inp=x)),
        "  softmax + Prediction": median_ms(finish),
        "end to end, besides the prediction:": float("nan"),
        "  open_scan (PNG bytes -> slice)": median_ms(lambda i=0: open_scan(pngs[i % len(pngs)], "scan.png")),
        f"  Grad-CAM at {layer} for the predicted class (explain)":
            median_ms(lambda i=0: explain(predictor, pick(i), target=0, layer=layer)),
    }


# ---------------------------------------------------------------- running
def load_scans(n: int, data_dir=None) -> list[np.ndarray]:
    from model.core.dataset import load_split

    test = load_split("test", data_dir, limit=n)
    return [test.images[i, 0].numpy() for i in range(len(test))]


def measure(methods: dict, inputs: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of every method on every input, interleaved: input by input, method by method."""
    for fn in methods.values():  # warm-up: first calls compile kernels and fill caches
        fn(inputs[0])
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for item in inputs:
            for name, fn in methods.items():
                t0 = time.perf_counter()
                fn(item)
                times[name].append(time.perf_counter() - t0)
    return times


def table(title: str, times: dict[str, list[float]], baseline: str) -> dict[str, dict]:
    rows = {name: percentiles(t) for name, t in times.items()}
    base = rows[baseline]["p50"]
    print(f"{title}")
    print(f"  {'method':38s} {'p50 ms':>9s} {'p95 ms':>9s} {'x faster':>9s}")
    for name, row in rows.items():
        row["ratio"] = base / row["p50"]
        print(f"  {name:38s} {row['p50']:9.2f} {row['p95']:9.2f} {row['ratio']:8.1f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=20, help="distinct test scans (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the scans (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch and engine intra-op threads (default: torch's choice, {torch.get_num_threads()} "
                             "here)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the project's dataset folder")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 scans, 1 round")
    args = parser.parse_args(argv)
    from model.core.constants import WEIGHTS_PATH
    from model.core.inference import Predictor
    from model.reports.record import png_bytes

    if args.threads:
        torch.set_num_threads(args.threads)
    scans, rounds = (2, 1) if args.quick else (args.scans, args.rounds)
    load_before = os.getloadavg()
    predictors = {"torch": Predictor.from_assets(device="cpu")}
    for engine in ("onnxruntime", "openvino"):
        predictors[engine] = Predictor.from_assets(device="cpu", engine=engine, threads=args.threads)
    images = load_scans(scans, args.data_dir)
    pngs = [png_bytes(image) for image in images]
    temperature = predictors["torch"].temperature
    size = predictors["torch"].image_size
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"{len(images)} test scans x {rounds} rounds; shipped network at {size} px, baseline at {BASELINE_SIZE} px")

    names = {"torch": "Predictor.predict_one (torch)", "onnxruntime": "ONNX Runtime engine",
             "openvino": "OpenVINO engine"}
    alone = {f"baseline (weights per request, {BASELINE_SIZE} px)":
             lambda image: naive_predict(WEIGHTS_PATH, image, temperature)}
    alone |= {names[k]: (lambda image, p=p: p.predict_one(image)) for k, p in predictors.items()}
    whole = {f"baseline (weights per request, {BASELINE_SIZE} px)":
             lambda data: naive_end_to_end(WEIGHTS_PATH, data, temperature)}
    whole |= {names[k]: (lambda data, p=p: end_to_end(p, data)) for k, p in predictors.items()}

    first = next(iter(alone))
    rows_alone = table("prediction alone (decoded slice -> calibrated probabilities):",
                       measure(alone, images, rounds), first)
    rows_whole = table("end to end (PNG bytes -> decode -> predict -> Grad-CAM):", measure(whole, pngs, rounds), first)
    parts = breakdown(predictors["torch"], images, pngs, repeat=10 if args.quick else 100)
    print("where the time goes (torch), median ms of each stage measured alone:")
    for name, ms in parts.items():
        print(f"  {name}" if math.isnan(ms) else f"  {name:66s} {ms:8.3f}")
    parts = {name.strip(): ms for name, ms in parts.items() if not math.isnan(ms)}
    agree = max(float(np.abs(np.array(predictors[k].predict_one(im).probabilities)
                             - np.array(predictors["torch"].predict_one(im).probabilities)).max())
                for k in ("onnxruntime", "openvino") for im in images)
    print(f"largest probability difference of an engine from torch on these scans: {agree:.2e}")
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "cpus": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "scans": len(images), "rounds": rounds,
              "image_size": size, "baseline_size": BASELINE_SIZE, "load_average": [load_before, os.getloadavg()],
              "prediction_alone": rows_alone, "end_to_end": rows_whole, "breakdown_ms": parts,
              "max_engine_probability_difference": agree}
    print(f"load average (1, 5, 15 min) before {tuple(round(v, 1) for v in load_before)}, "
          f"after {tuple(round(v, 1) for v in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
