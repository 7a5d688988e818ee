"""Data kept only as long as policy says: scheduled clean-up and tenant data deletion."""
