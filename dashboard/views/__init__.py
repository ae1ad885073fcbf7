"""Function views: validate input, call one selector (or service), render."""
