"""Behaviour policies for generated D4RL-style datasets: SAC training, rollouts, the shipped snapshots."""
