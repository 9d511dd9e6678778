"""Generated D4RL-style datasets: the recipes (datasets.py), the behaviour-policy SAC that makes their
policies (sac.py, online.py), rollouts (rollout.py) and the policies shipped in the package (shipped.py)."""
