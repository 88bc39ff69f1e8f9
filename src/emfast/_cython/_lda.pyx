"""Cython + OpenMP kernels of LDA: the variational E-step of batch VB (a document pass and a
word pass) and the Dirichlet expectation.

The contract (shapes, conventions, meaning of every output) is the "Topic models (LDA)"
section of ``emfast.kernels``; ``tests/reference_lda.py`` is the judge. This file is only
about *how*.

exp_topic_word comes transposed, word-major (V, K_pad) in float64 with K padded to a
multiple of 8 by zero lanes (the binding makes it once per M-step): the row of a word is
contiguous and every loop over K is a straight vector loop (_lda.h, GCC/Clang vector
extensions). The document pass runs each document's fixed point in a thread's scratch,
dropping the topics the document no longer uses and moving to its live topics' rows
gathered topic-major once they fit LDA_TOPIC_MAJOR doubles (_lda.h: emfast_lda_doc), and
leaves the final exp(E[log theta]) in doc_exp (N, K_pad); the word pass builds each column
of the statistics from the CSC copy of X, on one thread. Memory beyond the inputs: 6 K_pad
doubles and 40 KiB per thread; no per-thread (K, V) buffer.

Determinism: documents go in blocks of LDA_DOC_BLOCK, blocks in contiguous groups whose
number depends only on the shapes (emfast._layout, the Numba backend's rule too); the word
bound is summed per group and the groups' sums added in group order; a column of the
statistics is summed by one thread in document order. Results are bit-identical for every
thread count.
"""

# Everything is in _lda_impl.pxi, which _lda_avx2.pyx and _lda_avx512.pyx include too.
include "_lda_impl.pxi"
