"""Studies on a Ray cluster: the driver and the per-node task."""
