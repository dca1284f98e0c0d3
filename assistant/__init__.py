"""ask-oom assistant package."""
