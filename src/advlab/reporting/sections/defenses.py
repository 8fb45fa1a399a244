"""Report sections for defenses (registered with @section)."""
