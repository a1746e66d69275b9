"""Persistence behind one small interface: SQLite by default, PostgreSQL for production."""
