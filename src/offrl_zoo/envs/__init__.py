"""Tasks (dataset id + evaluation env + reference scores) and the toy bandit envs."""

from offrl_zoo.envs.tasks import Task, all_suites, all_tasks, get_suite, get_task, register_suite, register_task

__all__ = ["Task", "all_suites", "all_tasks", "get_suite", "get_task", "register_suite", "register_task"]
