"""The system: every actor's state and the shared world as one value (`state`), the
actor table and the step relation (`machine`), the world a scenario sets up
(`setup`), and the cost model (`clock`)."""
