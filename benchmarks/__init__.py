"""Log-throughput and latency benchmarks: raftstore against plain pysyncobj and etcd, in one run.

Run with ``make bench`` (full), ``python -m benchmarks --quick``, or
``raftstore bench`` for raftstore alone. Results: ``benchmarks/RESULTS.md``.
"""
