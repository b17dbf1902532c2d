"""Data-parallel training (Lightning's DDP) for a whole run.

``symptomfuse train --strategy ddp --devices N [--num-nodes M]`` trains each network of each fold over
N x M processes: each sees its share of every batch and the gradients are averaged, so all processes hold
the same weights after every step. The processes are Lightning's (it starts N - 1 more copies of the
command when the first network trains) or torchrun's (``torchrun --nproc-per-node N -m symptomfuse.cli
train ...``); either way every process runs the whole cross-validation in step with the others, and every
fit is a meeting point. Only the first process (rank 0) writes the run folder; the others write the same
things into a scratch folder of their own, removed at the end, so no code path differs between ranks.

After each fit, ``replica_difference`` compares the ranks' weights (the run records it per model-fold):
0.0 means the processes agree, as DDP promises.
"""

from __future__ import annotations

import os

import torch


def global_rank(devices: int) -> int:
    """This process's rank: torchrun's RANK, else Lightning's NODE_RANK x devices + LOCAL_RANK (0 in the
    process a user started)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    return int(env.get("NODE_RANK", 0)) * devices + int(env.get("LOCAL_RANK", 0))


def replica_difference(model: torch.nn.Module) -> float | None:
    """The largest absolute difference between this process's weights (and buffers) and any other
    rank's; None outside a data-parallel run. Every rank must call it at the same point."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    flat = torch.cat([v.detach().float().flatten().cpu() for v in model.state_dict().values()
                      if v.is_floating_point()])
    if dist.get_backend() == "nccl":
        flat = flat.cuda()
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max(float((g - flat).abs().max()) for g in gathered)
