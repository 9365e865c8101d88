"""The imperative shell around the core: the daemon, its journal and state directory, the sinks that deliver."""
