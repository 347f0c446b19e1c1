"""Pydantic models shared by the API process and the workers. Nothing here imports torch."""
