"""The experiment behind ``00_tour``: a real weight matrix to sparsify.

A softmax-regression classifier (one ``nn.Linear(784, 10)``) trained on Fashion-MNIST has a weight
matrix whose rows look like the garments they detect, which makes magnitude Top-K visible: at each
density we keep only the largest-|w| entries (SWAT's forward-pass rule) and measure what the
sparsified classifier still gets right on the test split.
"""

from __future__ import annotations

import torch
from torch import nn

from swatlib.cache import cached
from swatlib.data import load
from swatlib.topk import check_density, topk_mask
from swatlib.train import evaluate, fit

__all__ = ["topk_accuracy", "train_linear_classifier"]


def train_linear_classifier(
    *, subset: int | None, epochs: int, lr: float, batch_size: int, seed: int, profile: str
) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Train (or fetch from the cache) softmax regression on Fashion-MNIST.

    Returns
    -------
    history, weight, bias
        The per-epoch records of :func:`swatlib.train.fit`, the 10×784 weight and the bias.
    """
    config = dict(
        experiment="tour/linear-classifier", dataset="fashion-mnist", subset=subset,
        model="linear-784-10", method="dense", optimizer="sgd-momentum-0.9",
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, profile=profile,
    )

    def compute():
        data = load("fashion-mnist", subset=subset)
        generator = torch.Generator().manual_seed(seed)
        model = nn.Linear(data.x_train.shape[1], 10)
        with torch.no_grad():
            model.weight.normal_(0.0, 0.01, generator=generator)
            model.bias.zero_()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        history = fit(model, data, optimizer, epochs=epochs, batch_size=batch_size,
                      generator=generator, label=f"linear classifier (seed {seed})")
        tensors = {"weight": model.weight.detach().clone(), "bias": model.bias.detach().clone()}
        return {"history": history}, tensors

    entry = cached(config, compute)
    return entry.result["history"], entry.tensors["weight"], entry.tensors["bias"]


def topk_accuracy(weight: torch.Tensor, bias: torch.Tensor, data, densities: list[float]) -> list[dict]:
    """Test accuracy of the classifier with its weight reduced to magnitude Top-K at each density.

    The bias stays dense, as in SWAT. Returns one record per density with the kept count.
    """
    records = []
    for density in densities:
        check_density(density)
        mask = topk_mask(weight, density)
        model = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            model.weight.copy_(weight * mask)
            model.bias.copy_(bias)
        loss, acc = evaluate(model, data.x_test, data.y_test)
        records.append(dict(density=density, kept=int(mask.sum()), test_loss=loss, test_acc=acc))
    return records
