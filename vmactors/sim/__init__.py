"""Simulation: system state and steps, scheduler, runtimes (direct and Trio), log."""
