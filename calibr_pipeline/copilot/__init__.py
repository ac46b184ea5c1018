"""The copilot area: plain-language questions and rule proposals, contained (see docs/copilot_simulation.md)."""
