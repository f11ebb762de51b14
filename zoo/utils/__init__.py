"""Small shared helpers (image conversion for logging and figures)."""
