"""The journal and its stores (memory now; SQLite and PostgreSQL to come)."""
