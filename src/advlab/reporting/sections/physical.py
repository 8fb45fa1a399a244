"""Report sections for physical (registered with @section)."""
