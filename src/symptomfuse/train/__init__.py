"""Training: person-grouped splits, fitting one model, and cross-validating every model of a run."""
