"""One grayscale input channel against the slice repeated into three.

    python -m benchmarks.bench_input_channels

Both networks are ResNet-34 at the same size and batch; only conv1 differs.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from model.core.network import build_model


def step_time(channels: int, size: int, batch: int, repeat: int = 5) -> float:
    torch.manual_seed(0)
    net = build_model(in_channels=channels).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(batch, 1, size, size).expand(-1, channels, -1, -1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    for size in (128, 224):
        one, three = step_time(1, size, 32), step_time(3, size, 32)
        print(f"{size}px batch 32 train step: 1 channel {one * 1000:.0f} ms, 3 channels {three * 1000:.0f} ms, "
              f"3/1 ratio {three / one:.3f}")


if __name__ == "__main__":
    main()
