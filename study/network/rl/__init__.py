"""Reinforcement learning of teachers: DQN and PPO."""
