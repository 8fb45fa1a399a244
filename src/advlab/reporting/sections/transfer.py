"""Report sections for transfer (registered with @section)."""
