"""swatlib: a reproducibility companion for sparse neural-network training.

Submodules are imported on demand (``import swatlib.data``) so that the light ones
(cache, plotting) never pay for torch.
"""

__version__ = "0.2.0"
