"""ask-oom ui package."""
