"""Report sections for evaluation (registered with @section)."""
