"""Job-execution log service: runs the open-orders sync and records every run."""
