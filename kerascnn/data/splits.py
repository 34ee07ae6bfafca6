"""The seeded (stratified) train / validation split every source uses."""
from __future__ import annotations

import numpy as np

from kerascnn.errors import ConfigError, DataError


def split_validation(x, y, val_split: float, seed: int):
    """Seeded split of ``val_split`` of the samples, stratified when every class has two or more."""
    if not 0 <= val_split < 1:
        raise ConfigError(f"--val-split must be in [0, 1); received {val_split}")
    n = len(x)
    n_val = int(round(n * val_split))
    if n_val == 0:
        return x, y, x[:0], y[:0]
    if n - n_val < 1:
        raise DataError(f"only {n} training images: nothing left after a {val_split} validation split")
    from sklearn.model_selection import train_test_split

    present = np.unique(np.asarray(y), return_counts=True)[1]   # not bincount: a label of 1e12 allocates nothing
    stratify = y if present.min() >= 2 and min(n_val, n - n_val) >= len(present) else None
    idx_tr, idx_val = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=stratify)
    idx_tr.sort()
    idx_val.sort()
    return x[idx_tr], y[idx_tr], x[idx_val], y[idx_val]
