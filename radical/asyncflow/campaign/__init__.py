"""Campaigns over several runs: the journal of finished tasks and the engine's
recorder of it.  An optional layer above the core."""
