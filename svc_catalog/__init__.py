"""Books, categories and (later) inventory (nameko service ``catalog``)."""
