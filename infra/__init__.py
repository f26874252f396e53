"""Cluster-level components of the ML platform: settings, network, cluster, node pools, namespaces."""
