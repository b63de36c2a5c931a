"""The run history: every convert, bench and validate result in a versioned
SQLite file, and their comparison and export."""
