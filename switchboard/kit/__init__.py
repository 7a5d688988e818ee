"""Infrastructure every domain package stands on."""
