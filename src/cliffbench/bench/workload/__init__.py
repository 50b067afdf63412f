"""What is asked: seeded requests cut from the corpus at exact token lengths."""
