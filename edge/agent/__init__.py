"""The agent client: the agent protocol over a transport, checks on what devices
answer, the zipapp, one session per device per command, and following jobs."""
