"""The training loop shared by every notebook that trains a classifier.

One epoch = one pass over a shuffled training split in mini-batches, then an evaluation of the
training and test splits. Every epoch prints one progress line (papermill stores each line as
notebook output, so there is no progress bar) and adds one plain-dict record to the history, which
goes into the results cache unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def use_threads(threads: int) -> int:
    """Set torch's intra-op thread count; returns the count in force.

    On two busy cores, one thread was often the fastest for the small convolutions and sparse
    kernels of these experiments, so notebooks expose it as a parameter.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The connection weights whose gradient is the "gradient flow" (biases excluded)."""
    linears = getattr(model, "linears", None)
    if linears is None:
        return [p for p in model.parameters() if p.dim() > 1]
    return [getattr(l, "values", None) if hasattr(l, "values") else l.weight for l in linears]


def _squared_grad_norm(weights: list[torch.Tensor]) -> float:
    return float(sum(w.grad.pow(2).sum() for w in weights if w.grad is not None))


def fit(
    model: nn.Module,
    data,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    label: str = "run",
    log: Callable[[str], None] = print,
    evolution=None,
    pruning=None,
    after_step: Callable[[], None] | None = None,
    ledger=None,
) -> list[dict]:
    """Train ``model`` on ``data`` (a :class:`swatlib.data.Dataset`) with cross-entropy.

    Parameters
    ----------
    model, optimizer
        Any classifier returning logits, and an optimizer over its parameters.
    data
        Object with ``x_train, y_train, x_test, y_test`` tensors.
    epochs, batch_size
        Number of passes and mini-batch size (the last, smaller batch is kept).
    generator
        Drives the shuffling, so a seed fixes the whole run.
    label
        Prefix of the progress lines.
    log
        Receives one line per epoch.
    evolution
        Topology evolution run at the end of every epoch but the last, e.g.
        :class:`swatlib.topology.SET` (anything with ``evolve(model, optimizer)``).
    pruning
        Neuron pruning consulted at the end of every epoch (before evolution), e.g.
        :class:`swatlib.importance.ImportancePruning` (``step(model, optimizer, epoch)``).
    after_step
        Called after every ``optimizer.step()`` (per-step topology such as RigL or SWAT-M).
    ledger
        A :class:`swatlib.costmodel.MeasuredLedger`: training steps run inside it, and each
        one is closed with ``end_step(batch)``. Evaluation is not recorded.

    Returns
    -------
    list of dict
        Per epoch: ``epoch, train_loss, train_acc, test_loss, test_acc``; ``seconds`` (training),
        ``eval_seconds``, ``topology_seconds`` (pruning + evolution); ``gradient_flow`` (mean over
        the epoch's steps of the squared norm of the loss gradient over existing connections);
        and, for models that report them, ``nnz`` and ``hidden_neurons`` after the epoch.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    history = []
    n = len(data.x_train)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        flow, steps = 0.0, 0
        with ledger if ledger is not None else contextlib.nullcontext():
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                flow += _squared_grad_norm(_weights(model))
                steps += 1
                optimizer.step()
                if after_step is not None:
                    after_step()
                if ledger is not None:
                    ledger.end_step(len(idx))
        del loss  # topology changes must not meet a live graph
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        eval_seconds = time.perf_counter() - start
        start = time.perf_counter()
        if pruning is not None:
            pruning.step(model, optimizer, epoch)
        if evolution is not None and epoch < epochs:
            evolution.evolve(model, optimizer)
        topology_seconds = time.perf_counter() - start
        record = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                      test_acc=test_acc, seconds=seconds, eval_seconds=eval_seconds,
                      topology_seconds=topology_seconds, gradient_flow=flow / steps)
        if hasattr(model, "nnz"):
            record["nnz"] = int(model.nnz)
        if hasattr(model, "hidden_neurons"):
            record["hidden_neurons"] = list(model.hidden_neurons)
        history.append(record)
        log(f"{label}: epoch {epoch}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}"
            f"  test loss {test_loss:.4f} acc {test_acc:.4f}  {seconds:.1f} s"
            + (f"  nnz {record['nnz']}" if "nnz" in record else ""))
    return history
