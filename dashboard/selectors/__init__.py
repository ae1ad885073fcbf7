"""Reads for the pages and the API. Views call these; they hold every ORM query of the web side."""
