"""Infrastructure: the state machine definition, its static check, and the local stack."""
