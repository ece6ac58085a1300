"""SQLite state: the database (pragmas, migrations) and one repository module per kind of record."""
