"""Demo data: realistic webhook bodies, the set ``wawindow dev`` replays, and replaying
signed bodies."""
