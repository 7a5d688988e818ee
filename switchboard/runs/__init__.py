"""Agent runs: creation, execution on workers, the event stream and its replay buffer."""
