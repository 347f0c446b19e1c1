"""The `seqattr` command and the process supervisor behind `make serve`: the one place that may start both
the API and the workers."""
