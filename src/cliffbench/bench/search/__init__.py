"""The cliff search: its state machine, its plan (ETA stand-ins) and its run against an engine."""
