"""Books, categories, reviews and inventory (nameko service ``catalog``)."""
