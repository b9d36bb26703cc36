"""Stream processors: pure rules and matching (core) and the Faust topology that feeds them (shell)."""
