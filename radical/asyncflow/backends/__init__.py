"""Execution backends: adapters from the engine to an execution system."""
