"""Collecting trajectories, and the random keys every draw comes from."""
