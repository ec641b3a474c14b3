"""What a run did, as it runs and after: state counts, progress, the task
profile, the run summary and the plots.  An optional layer above the core."""
