"""A regime change found by a 2-state Gaussian HMM: the annual flow of the Nile, 1871-1970.

The flow of the Nile at Aswan (10^8 m^3 a year; ``emfast.datasets.load_nile()``, public
domain, provenance in ``src/emfast/data/README.md``) is the classic change-point series
(Cobb 1978): the mean flow drops after 1898, when work on the first Aswan dam began. An
HMM knows nothing of dates or dams; a 2-state ``emfast.hmm.GaussianHMM`` fitted to the
100 values finds two regimes (mean flow about 1097 and about 851) and its Viterbi path
switches once, in 1899, from the high regime to the low one.

Run: ``python examples/nile_hmm.py`` (with matplotlib installed, ``--plot FILE`` saves the
series coloured by state over the stacked posterior state probabilities).
"""

import argparse

import numpy as np

from emfast.datasets import load_nile
from emfast.hmm import GaussianHMM


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", metavar="FILE", help="save a figure (needs matplotlib)")
    args = parser.parse_args(argv)

    year, flow = load_nile()
    X = flow[:, None]
    hmm = GaussianHMM(2, n_iter=200, n_init=5, random_state=0).fit(X)
    states = hmm.predict(X)
    changes = year[1:][np.diff(states) != 0]       # the first year of each new regime
    high = int(np.argmax(hmm.means_[:, 0]))
    print(f"regimes: mean flow {hmm.means_[high, 0]:.0f} (sd "
          f"{np.sqrt(hmm.covars_[high, 0, 0]):.0f}) and {hmm.means_[1 - high, 0]:.0f} (sd "
          f"{np.sqrt(hmm.covars_[1 - high, 0, 0]):.0f}), 10^8 m^3 a year")
    print(f"the Viterbi path changes regime in: {', '.join(map(str, changes))}")
    print(f"P(high regime) in 1897..1900: "
          f"{np.round(hmm.predict_proba(X)[26:30, high], 3).tolist()}")

    if args.plot:
        import matplotlib.pyplot as plt

        from emfast.plot import plot_hmm_states

        top, bottom = plot_hmm_states(hmm, flow, time=year)
        top.set_ylabel(r"flow ($10^8$ m$^3$)")
        top.set_title("Nile at Aswan, 1871-1970: 2-state GaussianHMM")
        bottom.set_xlabel("year")
        top.figure.set_size_inches(9, 5)
        top.figure.tight_layout()
        top.figure.savefig(args.plot, dpi=100)
        plt.close(top.figure)
        print(f"saved {args.plot}")
    return {"change_years": changes.tolist(), "means": np.sort(hmm.means_[:, 0]),
            "states": states}


if __name__ == "__main__":
    main()
