"""Where a running study stands: the reporter interface, the ETA, the terminal display."""
