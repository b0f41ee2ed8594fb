"""Talking to a target: what travels (the boot program and the agent's sources), the
transports (this machine, OpenSSH with one shared connection per host) and the typed
client with one method per agent op."""
