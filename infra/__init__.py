"""Infrastructure: the state machine definition, its static check, the CLI, and the local stack.

Nothing imports this layer but its own tests and benchmarks; ``__all__`` names its modules (imported by name, none
here, so the CLI's startup pays only for what a command uses).
"""

__all__ = ["asl_check", "cli", "cli_evals", "cli_triggers", "cli_views", "local"]
