"""Would an int8 copy of the shipped network be safe to serve? Static quantization with ONNX Runtime, judged.

    python -m benchmarks.bench_int8 [--calibration 300] [--out int8.json] [--quick]

The float32 export (model.core.engine) is quantized with `onnxruntime.quantization.quantize_static` (QDQ, int8
weights per output channel, int8 activations, MinMax ranges) from a calibration reader over train slices of
the subjects the network trained on. The int8 copy is kept only if, on every held-out slice, it predicts the
float32 class and no calibrated probability moves by more than MAX_PROBABILITY_CHANGE. Held out: the
published test split (1,280 slices) and every slice of the subjects the shipped network never trained on
(its subject-grouped validation split, found as `model.qualify.trust._build` finds it). Prints both figures, the
latency of one slice against the float32 ONNX Runtime engine measured in the same run, and the verdict.
OpenVINO's NNCF is not installed here, so only ONNX Runtime's quantizer is tried.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MAX_PROBABILITY_CHANGE = 0.01  # the largest move of any calibrated probability that int8 may cause


def held_out_and_calibration(data_dir=None, calibration: int = 300, seed: int = 0, limit: int | None = None):
    """({"test": uint8 (N, 1, S, S), "never_trained": ...}, calibration uint8 (calibration, 1, S, S)).

    never_trained: every slice (both splits) of the subjects in the shipped network's validation split; the
    calibration slices are drawn from the train split's other subjects. limit: first N of each (smoke runs).
    """
    from model.training.data import shipped_split, slices_with_subjects

    train, _, groups = slices_with_subjects("train", data_dir)
    test, _, test_groups = slices_with_subjects("test", data_dir)
    keep, _ = shipped_split(train.labels.numpy(), groups)
    trained = set(groups[keep])
    images = torch.cat([train.images, test.images])
    unseen = np.flatnonzero(~np.isin(np.concatenate([groups, test_groups]), list(trained)))
    pick = np.random.default_rng(seed).choice(keep, size=min(calibration, len(keep)), replace=False)
    held = {"test": test.images, "never_trained": images[unseen]}
    if limit:
        held = {k: v[:limit] for k, v in held.items()}
    return held, train.images[np.sort(pick)], len(set(np.concatenate([groups, test_groups])[unseen]))


def quantize(fp32: Path, calibration: np.ndarray, out: Path) -> Path:
    """int8 QDQ copy of the ONNX file `fp32`, activations ranged on `calibration` (float32 (N, 1, S, S))."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    prepared = out.with_name(out.stem + "_prep.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def latency(engine, x: np.ndarray, repeat: int) -> list[float]:
    engine.logits(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine.logits(x)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=300, help="train slices that range the activations "
                        "(default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=100, help="timed single-slice runs per engine (default: "
                        "%(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 held-out slices per set, 32 to "
                        "calibrate, 10 timed runs")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from model.core.engine import export_onnx
    from model.core.runtimes import OnnxRuntimeEngine
    from model.core.inference import Predictor, as_batch
    from model.core.preprocess import to_input

    calibration_n, repeat, limit = (32, 10, 64) if args.quick else (args.calibration, args.repeat, None)
    predictor = Predictor.from_assets(device="cpu")
    size, temperature = predictor.image_size, predictor.temperature
    held, calibration, unseen_subjects = held_out_and_calibration(calibration=calibration_n, limit=limit)
    fp32_path = export_onnx(predictor.net, size, sha256=predictor.sha256)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        int8_path = quantize(fp32_path, to_input(calibration, size).numpy(), Path(tmp) / "int8.onnx")
        seconds = time.perf_counter() - t0
        fp32, int8 = OnnxRuntimeEngine(fp32_path), OnnxRuntimeEngine(int8_path)
        sets = {}
        for name, images in held.items():
            x = to_input(as_batch(images), size).numpy()
            p32, p8 = (torch.softmax(torch.from_numpy(e.logits(x)) / temperature, 1).numpy() for e in (fp32, int8))
            change = np.abs(p8 - p32).max(axis=1)
            sets[name] = {"slices": len(x), "class_flips": int((p8.argmax(1) != p32.argmax(1)).sum()),
                          "max_probability_change": float(change.max()),
                          "slices_over_limit": int((change > MAX_PROBABILITY_CHANGE).sum())}
        one = to_input(as_batch(held["test"][:1]), size).numpy()
        t32, t8 = [], []
        for _ in range(5):  # interleaved, so both see the same load on a shared machine
            t32 += latency(fp32, one, max(1, repeat // 5))
            t8 += latency(int8, one, max(1, repeat // 5))
    keep = all(s["class_flips"] == 0 and s["max_probability_change"] <= MAX_PROBABILITY_CHANGE for s in sets.values())
    result = {"date": time.strftime("%Y-%m-%d"), "calibration_slices": len(calibration),
              "quantize_seconds": round(seconds, 1), "never_trained_subjects": unseen_subjects,
              "max_probability_change_allowed": MAX_PROBABILITY_CHANGE, "sets": sets,
              "latency_ms": {"fp32_p50": statistics.median(t32) * 1e3, "int8_p50": statistics.median(t8) * 1e3},
              "kept": keep, "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    print(f"int8 static quantization (QDQ, per-channel, MinMax on {len(calibration)} train slices, "
          f"{seconds:.1f} s) against float32, calibrated probabilities at T={temperature:.3f}:")
    for name, s in sets.items():
        print(f"  {name:14s} {s['slices']:5d} slices: {s['class_flips']} class flips, max |dp| "
              f"{s['max_probability_change']:.4f}, {s['slices_over_limit']} slices over {MAX_PROBABILITY_CHANGE}")
    ratio = result["latency_ms"]["fp32_p50"] / result["latency_ms"]["int8_p50"]
    print(f"  one slice, ONNX Runtime: float32 {result['latency_ms']['fp32_p50']:.2f} ms, int8 "
          f"{result['latency_ms']['int8_p50']:.2f} ms p50 (int8 {ratio:.2f}x as fast)")
    print(f"  verdict: {'KEEP' if keep else 'DO NOT SHIP'} (every class kept and |dp| <= {MAX_PROBABILITY_CHANGE})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
