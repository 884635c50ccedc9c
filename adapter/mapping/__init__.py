"""Admin rows to domain states and back: the master and subscriber views, the allow-list."""
