"""Cython + OpenMP kernel of ``emfast.fit_many``: the whole EM of many small Gaussian
mixtures -- initialisation, iterations, M-step, convergence rule, restarts -- one problem
per thread at a time, in one call.

The contract (arguments, layouts, status codes) is the docstring of :func:`fit_many` below
and of ``emfast.batch``; ``tests/reference_batch.py`` (NumPy) and ``emfast.GaussianMixture``
fitted problem by problem are the judges. The arithmetic follows GaussianMixture's step for
step (k-means on the rows less their mean, scikit-learn's stopping rules, the M-step of
``emfast.mixture._gaussian.mstep_moments``, ``NK_EPS``), so the same random numbers give
the same fit to rounding. The random numbers themselves come in (drawn by ``emfast.batch``
from each problem's RandomState exactly as GaussianMixture draws them): the kernel draws
nothing. Sample weights (optional, rescaled by the caller as GaussianMixture rescales them)
weigh every step as in GaussianMixture's weighted fit: k-means++ draws by weight times
squared distance, Lloyd's weighted means and tolerance, the statistics, and the lower bound
(the weighted mean log-likelihood); unweighted, every weight is 1 and the arithmetic the
same bit for bit.

What GaussianMixture would resolve with its degenerate-case machinery (an empty cluster in
Lloyd, fewer distinct rows than components in k-means++, a component losing all its rows,
a covariance that is not, or nearly not, positive definite) ends the problem with status
FALLBACK; the caller then fits that problem with GaussianMixture itself, so its behaviour (re-seeding,
regularisation, warnings) is GaussianMixture's exactly. Nothing here allocates per problem
or touches Python inside the parallel loop; problems are independent, so results do not
depend on the thread count.

Small D and K, no BLAS (a call costs more than the work): the E-step takes blocks of 256
rows from a feature-major copy of the problem's rows, so that its loops over the rows
vectorise, exp included (_fastexp.h); Cholesky and its triangular inverse per component
in scalar loops. Problems are scheduled dynamically (their sizes may differ); each thread
allocates its scratch once, for the largest problem.
"""


# Everything is in _batch_impl.pxi, which _batch_avx2.pyx includes too.
include "_batch_impl.pxi"
