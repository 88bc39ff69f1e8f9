"""Regenerate the README's pictures in docs/images/ (needs matplotlib: emfast[plot]).

* ``mixture.png``: ``emfast.plot.plot_mixture`` on simulated 2-D data (four Gaussian
  clusters of different shapes; a 4-component full-covariance GaussianMixture), points
  coloured by component, ellipses at 1 and 2 standard deviations.
* ``hmm_states.png``: ``emfast.plot.plot_hmm_states`` on the annual flow of the Nile
  (examples/nile_hmm.py --plot: a 2-state GaussianHMM finds the 1899 regime change).

Run from the repository root: ``python docs/make_images.py``. Deterministic (fixed seeds).
"""

import runpy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from emfast import GaussianMixture  # noqa: E402
from emfast.plot import plot_mixture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"


def simulated_clusters(seed=7):
    """600 rows of 2-D data from four Gaussians: elongated, tilted, round and small."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.multivariate_normal([0, 0], [[3.0, 2.2], [2.2, 2.0]], 200),
        rng.multivariate_normal([7, 1], [[0.6, -0.5], [-0.5, 1.2]], 150),
        rng.multivariate_normal([3, 7], [[1.0, 0.0], [0.0, 1.0]], 150),
        rng.multivariate_normal([8, 7], [[0.2, 0.0], [0.0, 0.2]], 100),
    ]
    return np.concatenate(parts)


def mixture_image(path):
    X = simulated_clusters()
    gm = GaussianMixture(4, covariance_type="full", n_init=3, random_state=0).fit(X)
    fig, ax = plt.subplots(figsize=(6, 5))
    plot_mixture(gm, X, ax=ax)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    IMAGES.mkdir(parents=True, exist_ok=True)
    mixture_image(IMAGES / "mixture.png")
    nile = runpy.run_path(str(ROOT / "examples" / "nile_hmm.py"))
    nile["main"](["--plot", str(IMAGES / "hmm_states.png")])
    print(f"wrote {IMAGES / 'mixture.png'} and {IMAGES / 'hmm_states.png'}")


if __name__ == "__main__":
    main()
