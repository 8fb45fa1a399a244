"""Report sections for analysis (registered with @section)."""
