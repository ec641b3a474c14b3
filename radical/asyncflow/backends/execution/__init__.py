"""Execution backend implementations (one module each) and their contract."""
