"""What a level measured: per-request and level metrics with exact intervals, repeats pooled and judged."""
