"""Models, distributions, ops, loss views, update rules, adaptation, meta-parameters."""
