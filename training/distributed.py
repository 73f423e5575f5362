"""Data-parallel steps that one device reproduces bit for bit.

An order may split every batch into ``grad_shards`` contiguous shards: the step's loss is the mean of
the shards' losses and its gradient the mean of the shards' gradients, each summed in shard order
(``((s_0 + s_1) + s_2) + ...``, then divided by the shard count). A worker host with that many
devices trains it with ``torch.nn.parallel.DistributedDataParallel``, one process per shard, whose
gradient reduction is replaced by :func:`ordered_mean_hook`: an all-gather and the same ordered sum.
DDP's own all-reduce sums in an order that depends on the backend's algorithm and the bucket, which no
single device could reproduce; this one costs a gather instead of a reduce and makes every step a
function of the order alone. A verifier (or a worker with one device) computes the shards one after
another in one process (:func:`emulated_loss_and_gradients`) and reaches the same bits.

Buffers (batch-norm statistics) follow DDP's ``forward_sync_buffers``: every forward starts from rank
0's, so the state rank 0 records keeps, step after step, the ones shard 0 computed (another rank's own
buffers after the last step are its shard's, until a next forward would sync them). Training draws no
random numbers in any registry model, so every process's RNG agrees.
"""

import torch
import torch.distributed as dist
from torch import nn


class LossModule(nn.Module):
    """A model's training loss as its forward, so DDP sees the call that makes the gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x, y)


def ordered_mean(values: list[torch.Tensor]) -> torch.Tensor:
    """``((v_0 + v_1) + ...) / len(values)``, one elementwise operation at a time (tensors or float32 arrays)."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total / len(values)


def ordered_mean_hook(group: dist.ProcessGroup, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: every rank's gradients gathered and averaged in rank order."""
    flat = bucket.buffer()
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, flat, group=group)
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(ordered_mean(gathered))
    return future


def wrap(model: nn.Module, group: dist.ProcessGroup) -> nn.Module:
    """``model``'s loss under DDP with the ordered-mean reduction."""
    ddp = nn.parallel.DistributedDataParallel(LossModule(model), process_group=group, forward_sync_buffers=True)
    ddp.register_comm_hook(group, ordered_mean_hook)
    return ddp


def distributed_loss_and_gradients(ddp: nn.Module, group: dist.ProcessGroup, xb: torch.Tensor, yb: torch.Tensor,
                                   autocast: torch.autocast) -> torch.Tensor:
    """This rank's shard through DDP; the gradients left on the model are the ordered mean over ranks,
    and the returned loss is the ordered mean of every rank's shard loss."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    with autocast:
        loss = ddp(xb.chunk(world)[rank], yb.chunk(world)[rank])
    loss.backward()
    losses = [torch.empty_like(loss.detach()) for _ in range(world)]
    dist.all_gather(losses, loss.detach().contiguous(), group=group)
    return ordered_mean(losses)


def emulated_loss_and_gradients(model: nn.Module, shards: int, xb: torch.Tensor, yb: torch.Tensor,
                                autocast: torch.autocast) -> torch.Tensor:
    """The same step's loss and gradients on one device: the shards one after another, their gradients
    accumulated in shard order (autograd adds each into ``.grad``) and divided by the shard count."""
    losses, kept = [], None
    for x, y in zip(xb.chunk(shards), yb.chunk(shards)):
        with autocast:
            loss = model.loss(x, y)
        loss.backward()
        losses.append(loss.detach())
        kept = kept or {n: b.clone() for n, b in model.named_buffers()}
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.grad.div_(shards)
        for name, buffer in model.named_buffers():
            buffer.copy_(kept[name])
    return ordered_mean(losses)


def from_rank_zero(state: object, group: dist.ProcessGroup) -> object:
    """Rank 0's ``state`` on every rank (the others pass None): the ranks of one worker trust each other."""
    box = [state]
    dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0), group=group)
    return box[0]


def sharded_loss(model: nn.Module, shards: int, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Forward only: the ordered mean of the shards' losses (the loss a step of this batch records)."""
    return ordered_mean([model.loss(x, y) for x, y in zip(xb.chunk(shards), yb.chunk(shards))])
