"""Sample data bundled with the package (read through importlib.resources)."""
