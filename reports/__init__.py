"""Reports read from the platform's Prometheus."""
