"""Where results live: level folders written atomically, tidy tables, the manifest and provenance, locks."""
