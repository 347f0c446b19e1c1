"""Attribution methods, one module per family; `workers.methods.registry` lists them by id."""
