"""Benchmark of the engine against the reference library (Inseq 0.7.1): `make bench`, `python -m tests.bench`.

Each (case, implementation) runs in its own child process (`tests.bench.child`) so that peak-memory readings
never mix; the parent (`tests.bench.runner`) compares the scores and prints a Markdown table. No module
here is named `test_*.py`: pytest does not collect the benchmark.
"""
