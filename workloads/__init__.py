"""Per-team workloads: training jobs, notebooks and model servers.

Their pods are placed with infra.scheduling.placement(), never by hand.
"""
