"""What each profile changes from the Truly Sparse paper's settings, stated once.

:data:`PROFILE_OVERRIDES` maps a profile's name to ``{dataset: {setting: value}}``: the settings
that profile changes from the paper's
(:data:`~swatlib.experiments.truly_sparse_reported.PAPER_SETTINGS`; the valid settings are
:data:`swatlib.experiments.truly_sparse.OVERRIDABLE`). Notebooks ``10``–``14`` refer to an entry
by name — their ``overrides`` parameter is ``"quick"`` by default, and ``smoke.yaml`` /
``paper.yaml`` set ``"smoke"`` / ``"paper"`` — and :func:`swatlib.experiments.truly_sparse.settings`
looks the name up. Every 1x notebook of a profile names the same entry, so a dataset's settings
are the same in all of them and they share their training runs through the results cache.

A run's spec (its results-cache key) holds the resolved settings, not the name: editing an entry
here changes the keys of the runs that use it, and only of those.
"""

from __future__ import annotations

__all__ = ["PROFILE_OVERRIDES"]

#: ``{profile: {dataset: {setting: value}}}``; an absent dataset keeps the paper's settings.
PROFILE_OVERRIDES = {
    # The paper's own settings (Table 7 per dataset, 500 epochs, Importance Pruning from epoch 200
    # every 10 epochs at p = 20); the paper profile also runs the paper's 5 trials.
    "paper": {},
    # "quick": qualitatively faithful, every notebook together within 30 minutes on 2 cores with
    # --jobs 2, three seeds (quick.yaml). Importance Pruning is compressed into the shorter runs: it starts at 35-40 % of
    # training, like the paper's epoch 200 of 500, and fires as often as it takes to end near
    # Table 2's end size (the paper's schedule read literally would fire 31 times and leave at most
    # 0.8^31 of the neurons, far below Table 2's sizes).
    "quick": {
        # A sixth of the training images and half of the test set (5,000 images: the per-epoch
        # evaluation of three seeds' runs has to fit the profile's time), 20 epochs instead of 500. The SET-MLPs
        # train at lr 0.05: the paper's initialisers use the dense fan-in, so the signal of a sparse
        # layer starts small and the first epochs sit on a loss plateau at lr 0.01 — negligible over
        # 500 epochs, not over 20 (notebook 10, "Why a larger learning rate"). The dense MLP keeps the
        # paper's 0.01: with All-ReLU it diverged (NaN loss) at 0.02 and above in exploratory runs.
        # Pruning at epochs 7, 10, ..., 19: 5 events, the last one epoch before the end.
        "fashion-mnist": {"subset": [10000, 5000], "epochs": 20, "lr": 0.05, "dense_lr": 0.01,
                          "ip_start": 7, "ip_every": 3},
        # Madelon is small: its data and hyper-parameters stay the paper's, for 60 epochs. Pruning at
        # epochs 24, 29, ..., 59: 8 events (Table 2 ends Madelon smaller than Fashion-MNIST).
        "madelon": {"epochs": 60, "ip_start": 24, "ip_every": 5},
        # CIFAR-10, Higgs and Leukemia are absent on the reference machine; if their files are there,
        # these shrink a run to minutes: fewer images, narrower hidden layers where the paper's are
        # thousands wide, 10 epochs with pruning at 4, 6, 8, 10.
        "cifar10": {"subset": [10000, 2000], "sizes": [3072, 1000, 500, 1000, 10], "epochs": 10,
                    "ip_start": 4, "ip_every": 2},
        "higgs": {"subset": [20000, 5000], "epochs": 10, "ip_start": 4, "ip_every": 2},
        "leukemia": {"sizes": [54675, 1000, 1000, 18], "epochs": 10, "ip_start": 4, "ip_every": 2},
    },
    # "smoke" (CI, `make test`): each notebook within 60 s on 2 cores. A few hundred samples, hidden
    # layers 64 wide or less (Madelon keeps the paper's wide-narrow-wide shape), 1-2 epochs and
    # pruning from the first epoch, so that every code path runs, pruning included; the results
    # mean nothing. Fashion-MNIST keeps the quick learning rates, so the dense MLP's own rate is
    # exercised too.
    "smoke": {
        "fashion-mnist": {"subset": [1000, 500], "sizes": [784, 64, 64, 64, 10], "epochs": 2, "lr": 0.05,
                          "dense_lr": 0.01, "ip_start": 1, "ip_every": 1},
        "madelon": {"subset": [500, 200], "sizes": [500, 40, 10, 40, 2], "epochs": 2, "ip_start": 1,
                    "ip_every": 1},
        "cifar10": {"subset": [500, 200], "sizes": [3072, 64, 32, 64, 10], "epochs": 1, "ip_start": 1,
                    "ip_every": 1},
        "higgs": {"subset": [1000, 500], "sizes": [28, 64, 64, 64, 2], "epochs": 1, "ip_start": 1,
                  "ip_every": 1},
        "leukemia": {"subset": [200, 100], "sizes": [54675, 64, 64, 18], "epochs": 1, "ip_start": 1,
                     "ip_every": 1},
    },
}
