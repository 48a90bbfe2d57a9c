"""warpkit.envs: the maze of the reinforcement-learning experiment (Flennerhag et al., 2020, Section 4.3).

Importing this package registers the gymnasium id ``warpkit/Maze-v0``:

>>> import gymnasium, warpkit.envs
>>> env = gymnasium.make("warpkit/Maze-v0", size=9)

(``gymnasium.make("warpkit.envs:warpkit/Maze-v0")`` imports the package itself.)
"""

import gymnasium

from warpkit.envs.maze import BatchedMaze, MazeConfig, MazeEnv, maze_seeds

MAZE_ENV_ID = "warpkit/Maze-v0"

if MAZE_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=MAZE_ENV_ID, entry_point="warpkit.envs.maze:MazeEnv")

__all__ = ["MAZE_ENV_ID", "BatchedMaze", "MazeConfig", "MazeEnv", "maze_seeds"]
