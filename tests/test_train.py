"""The shared training loop and the MLPs it trains."""

from types import SimpleNamespace

import pytest
import torch

from swatlib.costmodel import MeasuredLedger
from swatlib.models import MLP, SparseMLP
from swatlib.topology import SET, ImportancePruning, evolvable_layers
from swatlib.train import fit


def _data(n=96, features=20, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes].argmax(1))
    return SimpleNamespace(x_train=x, y_train=y, x_test=x[:32], y_test=y[:32])


def test_sparse_and_masked_mlp_start_identical():
    a = SparseMLP([20, 30, 3], epsilon=3, generator=torch.Generator().manual_seed(1))
    b = SparseMLP([20, 30, 3], epsilon=3, layer="masked", generator=torch.Generator().manual_seed(1))
    assert a.nnz == b.nnz and a.hidden_neurons == b.hidden_neurons == [30]
    for la, lb in zip(a.linears, b.linears):
        assert torch.equal(la.to_dense(), lb.to_dense())


def test_paper_fashion_mnist_shape_counts():
    sparse = SparseMLP([784, 1000, 1000, 1000, 10], epsilon=20, generator=torch.Generator().manual_seed(0))
    dense = MLP([784, 1000, 1000, 1000, 10])
    assert dense.n_params == 2_797_010  # paper Table 2, dense MLP
    assert sparse.linears[-1].density == 1.0  # the 10-way output layer comes out dense
    assert abs(sparse.n_params - 126_302) / 126_302 < 0.03  # paper: 126,302


@pytest.mark.parametrize("kwargs, name", [({"sizes": [10]}, "sizes"), ({"dropout": 1.0}, "dropout"),
                                          ({"layer": "csr"}, "layer")])
def test_bad_arguments_name_themselves(kwargs, name):
    args = {"sizes": [10, 5, 2], "epsilon": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        SparseMLP(args.pop("sizes"), **args)


def test_fit_logs_one_line_per_epoch_and_records_topology():
    data = _data()
    g = torch.Generator().manual_seed(0)
    model = SparseMLP([20, 40, 40, 3], epsilon=4, dropout=0.0, generator=g)
    nnz = model.nnz
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lines = []
    history = fit(model, data, opt, epochs=3, batch_size=16, generator=g, log=lines.append,
                  topology=[SET(evolvable_layers(model), optimizer=opt, generator=g)])
    assert len(lines) == 3 and all("epoch" in l and "nnz" in l for l in lines)
    assert [h["nnz"] for h in history] == [nnz] * 3  # SET conserves the number of connections
    assert all(h["gradient_flow"] > 0 for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_fit_applies_importance_pruning():
    data = _data()
    g = torch.Generator().manual_seed(0)
    model = SparseMLP([20, 40, 40, 3], epsilon=4, generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    history = fit(model, data, opt, epochs=2, batch_size=16, generator=g, log=lambda _: None,
                  topology=[ImportancePruning(model, start_epoch=1, every=1, percentile=25, optimizer=opt)])
    assert history[0]["hidden_neurons"][0] < 40 and model(data.x_test).shape == (32, 3)


def test_fit_closes_one_ledger_step_per_batch():
    data = _data(n=50)
    g = torch.Generator().manual_seed(0)
    model = MLP([20, 8, 3])
    ledger = MeasuredLedger()
    fit(model, data, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, batch_size=16,
        generator=g, log=lambda _: None, ledger=ledger)
    assert ledger.steps == 2 * 4 and ledger.examples == 100


class _Regression:
    """A task that is not classification: mean squared error of a scalar output, one metric."""

    def __init__(self, n=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def batches(self, batch_size, generator):
        order = torch.randperm(len(self.x), generator=generator)
        for i in range(0, len(order), batch_size):
            yield self.x[order[i:i + batch_size]], self.y[order[i:i + batch_size]]

    def loss(self, model, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x).squeeze(1), y)

    def examples(self, batch):
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model):
        return {"mse": float(self.loss(model, (self.x, self.y)))}


def test_fit_trains_any_task_with_its_own_loss_and_metrics():
    model = torch.nn.Linear(4, 1)
    lines = []
    history = fit(model, _Regression(), torch.optim.SGD(model.parameters(), lr=0.05), epochs=5, batch_size=16,
                  generator=torch.Generator().manual_seed(1), log=lines.append)
    assert set(history[0]) >= {"epoch", "mse", "seconds", "gradient_flow"} and "test_acc" not in history[0]
    assert history[-1]["mse"] < history[0]["mse"] / 2
    assert "mse" in lines[-1]


def test_fit_stops_after_the_first_epoch_that_meets_stop_when_and_keeps_the_full_runs_prefix():
    def train(**kwargs):
        model = torch.nn.Linear(4, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        lines = []
        history = fit(model, _Regression(), torch.optim.SGD(model.parameters(), lr=0.05), epochs=8, batch_size=16,
                      generator=torch.Generator().manual_seed(1), log=lines.append, **kwargs)
        return [h["mse"] for h in history], lines

    full, _ = train()
    threshold = (full[2] + full[3]) / 2          # first met after the fourth epoch
    assert min(full[:3]) > threshold >= full[3]
    stopped, lines = train(stop_when=lambda record: record["mse"] <= threshold)
    assert stopped == full[:4]
    assert lines[-1].endswith("stopped after epoch 4/8")
    never, _ = train(stop_when=lambda record: False)
    assert never == full


def test_fit_rejects_bad_schedule():
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        fit(MLP([2, 2]), _data(features=2, classes=2), None, epochs=0, batch_size=1,
            generator=torch.Generator())
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 2.5"):
        fit(MLP([2, 2]), _data(features=2, classes=2), None, epochs=1, batch_size=2.5,
            generator=torch.Generator())


def test_small_cnn_shapes_and_errors():
    from swatlib.models import SmallCNN

    model = SmallCNN(width=4)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in SmallCNN(width=32).parameters()) == 288_170
    with pytest.raises(ValueError, match="width"):
        SmallCNN(width=0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model(torch.randn(2, 784))
