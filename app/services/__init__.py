"""Domain logic and live checks. No Qt here: the GUI and the CLI both call these."""
