"""Modelled performance: workloads, the timed scheduler, `vmactors bench`."""
