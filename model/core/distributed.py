"""One process or many: the process group that `torchrun` asks for, shared by training and sharded prediction."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from model.core.network import pick_device


def init_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts a process group when run by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, pick_device(device_pref)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device
