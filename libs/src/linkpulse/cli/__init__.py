"""The `linkpulse` command line."""
