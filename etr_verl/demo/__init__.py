"""The embedded demo: a synthetic verifiable task, a tiny locally built model, and the GRPO-vs-ETR run."""
