"""Tasks (dataset id + evaluation env + reference scores) and the toy bandit envs."""

from offrl_zoo.envs.tasks import Task, all_tasks, get_task, register_task

__all__ = ["Task", "all_tasks", "get_task", "register_task"]
