"""relspace benchmarks: encoder overhead, query latency and FAISS index builds, as interleaved ratios.

The machine these run on is shared and noisy, so every figure that matters is a RATIO of two measurements
taken side by side: the two are alternated (A B, then B A, ...), repeated, and the medians reported.
Absolute figures are printed too, with the load average, for context only.

- ``python -m benchmarks <section...>`` runs the sections (``__main__``): one module each (``image``,
  ``workers``, ``text``, ``query``, ``index``), built on the one shared helper ``common``.
- ``python -m benchmarks.load_test`` load-tests the HTTP service; ``python -m benchmarks.reanchor`` times
  re-anchoring against corpus size.

Method, figures and tables: benchmarks/README.md.
"""
