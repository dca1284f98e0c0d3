"""ask-oom tools package."""
