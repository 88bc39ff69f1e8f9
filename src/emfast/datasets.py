"""Small data sets bundled with emfast."""

from importlib import resources

import numpy as np


def load_blobs():
    """1500 rows of 3-D data from 4 correlated Gaussian clusters.

    Returns (X (1500, 3) float64, y (1500,) int64 true cluster labels).
    """
    with resources.files("emfast").joinpath("data/blobs.csv").open() as f:
        data = np.loadtxt(f, delimiter=",", comments="#", skiprows=2)
    return data[:, :3].copy(), data[:, 3].astype(np.int64)


def load_nile():
    """The annual flow of the Nile at Aswan, 1871-1970 (10^8 m^3; public domain, provenance
    in emfast/data/README.md): a textbook regime change after 1898.

    Returns (years (100,) int64, flow (100,) float64).
    """
    with resources.files("emfast").joinpath("data/nile.csv").open() as f:
        year, flow = np.loadtxt(f, delimiter=",", comments="#", skiprows=3, unpack=True)
    return year.astype(np.int64), flow
