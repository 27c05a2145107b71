"""Environments, teachers, students, the distillation loops and the command line."""
