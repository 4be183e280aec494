"""Does storing the shipped weights in float16 cost accuracy?

    python -m analysis.check_half_precision runs/refit/last.pt

Compares the float32 training checkpoint with the shipped float16 safetensors
on the whole test split: disagreeing predictions, accuracy of each, and the
largest difference in calibrated probability.
"""
from __future__ import annotations

import sys

from model.core import checkpoint as ckpt
from model.core.dataset import load_split
from model.core.inference import Predictor
from model.core.network import build_model


def main(path: str) -> None:
    shipped = Predictor.from_assets(device="cpu")
    net = build_model()
    net.load_state_dict(ckpt.weights_to_ship(ckpt.load_training_checkpoint(path, net)))
    full = Predictor(net, image_size=shipped.image_size, temperature=shipped.temperature, device="cpu")
    test = load_split("test")
    p16, p32 = shipped.probabilities(test.images), full.probabilities(test.images)
    y = test.labels
    acc16 = (p16.argmax(1) == y).float().mean().item()
    acc32 = (p32.argmax(1) == y).float().mean().item()
    print(f"float32 checkpoint accuracy {acc32:.4%}, float16 shipped {acc16:.4%}; "
          f"{int((p16.argmax(1) != p32.argmax(1)).sum())} of {len(y)} predictions differ; "
          f"max |dp| {float((p16 - p32).abs().max()):.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
