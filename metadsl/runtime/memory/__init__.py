"""Replay buffers, episodic stores and their nearest-neighbour search."""
