"""The training side (torch): tasks (env, rewards, configs), PPO, export, evaluation."""
