"""The web console (SPEC "The console"): served by the daemon in its own asyncio loop when the daemon file has
`[web]`. Pages are rendered on the server from the engine (`quotad.core.console`) and the journal; actions are
the same journaled commands as the CLI's (`quotad.shell.actions`), with the logged-in user as `by`."""
