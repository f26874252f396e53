"""Cluster-level components: settings, network, cluster, node pools, namespaces."""
