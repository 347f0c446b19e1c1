"""Benchmark of the engine against the reference library (Inseq 0.7.1): `make bench`, `python -m tests.bench`.

Each (case, implementation) runs in its own child process (`tests.bench.child`) so that peak-memory readings
never mix; the parent (`tests.bench.runner`) plans the cases and runs the children, `tests.bench.report`
compares their scores and prints a Markdown table, `tests.bench.floor` gives each case's floor. No module here
is named `test_*.py`: pytest does not collect the benchmark.
"""
