"""Process-level concerns: the stderr console, progress, seeding, device selection."""
