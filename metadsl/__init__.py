"""metadsl: a declarative meta-reinforcement-learning language and compiler."""

__version__ = "0.1.0"
