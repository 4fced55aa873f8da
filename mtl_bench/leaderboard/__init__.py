"""Leaderboards: definitions (leaderboards/NAME.yaml), verified submissions, ranked tables."""
