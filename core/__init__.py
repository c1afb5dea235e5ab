"""stepfold's agent kernel: pure, no AWS handlers, no environment reads."""
