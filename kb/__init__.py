"""ask-oom kb package."""
