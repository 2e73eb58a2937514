"""Tools that run the platform: database setup, the development supervisor, the CLI."""
