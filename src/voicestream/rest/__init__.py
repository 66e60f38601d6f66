"""REST resources (pydantic models → JSON). Data goes through ``store``; no SQL here."""
