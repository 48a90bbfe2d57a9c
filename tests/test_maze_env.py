"""The maze of Flennerhag et al., 2020, Section 4.3: layout, rules, observation, seeding, and the single vs batched forms."""

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import warpkit.envs  # noqa: F401  (registers warpkit/Maze-v0)
from warpkit.envs.maze import (
    BatchedMaze,
    MazeConfig,
    MazeEnv,
    MazeLayout,
    draw_open_cell_except,
    make_walls,
    maze_seeds,
)

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3


def test_walls_of_a_7x7_maze_match_a_hand_drawn_map():
    expected = np.array([[1, 1, 1, 1, 1, 1, 1],
                         [1, 0, 0, 0, 0, 0, 1],
                         [1, 0, 1, 0, 1, 0, 1],
                         [1, 0, 0, 0, 0, 0, 1],   # (3, 3) is the centre: its pillar is removed
                         [1, 0, 1, 0, 1, 0, 1],
                         [1, 0, 0, 0, 0, 0, 1],
                         [1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(make_walls(7), expected)


@pytest.mark.parametrize("size", [9, 11, 13])
def test_walls_are_border_and_even_even_pillars_with_the_centre_open(size):
    walls = make_walls(size)
    centre = size // 2
    for r in range(size):
        for c in range(size):
            border = r in (0, size - 1) or c in (0, size - 1)
            pillar = r % 2 == 0 and c % 2 == 0 and (r, c) != (centre, centre)
            assert walls[r, c] == (border or pillar), (r, c)
    # 13×13: 121 interior cells, 25 even-even cells, one of them the open centre (11×11's centre is odd-odd)
    layout = MazeLayout(size)
    interior = (size - 2) ** 2
    assert len(layout.open_cells) == interior - ((size - 3) // 2) ** 2 + (centre % 2 == 0)
    if size == 13:
        assert len(layout.open_cells) == 97 and len(layout.goal_cells) == 96


def test_bad_sizes_and_actions_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="odd"):
        MazeConfig(size=12)
    with pytest.raises(ValueError, match="odd"):
        MazeEnv(size=3)
    env = MazeEnv(size=9)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0..3"):
        env.step(4)
    batched = BatchedMaze(3, MazeConfig(size=9))
    with pytest.raises(RuntimeError, match="reset"):
        batched.step(torch.zeros(3, dtype=torch.long))
    batched.reset(seed=0)
    with pytest.raises(ValueError, match="0..3"):
        batched.step(torch.tensor([0, 1, 7]))
    with pytest.raises(ValueError, match="shape"):
        batched.step(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="open cell"):
        env.reset(options={"goal": (2, 2)})  # a pillar


def test_goals_are_uniform_over_open_non_centre_cells():
    layout = MazeLayout(9)
    env = MazeEnv(size=9)
    counts = {}
    env.reset(seed=123)
    for _ in range(4000):
        _, info = env.reset()
        goal = info["goal"]
        assert not layout.walls[goal] and goal != layout.centre
        counts[goal] = counts.get(goal, 0) + 1
    assert set(counts) == {tuple(cell) for cell in layout.goal_cells}  # every candidate, nothing else
    expected = 4000 / len(layout.goal_cells)
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 80  # 39 degrees of freedom: p < 1e-4 above 80


def test_teleport_lands_on_an_open_cell_other_than_the_goal_and_covers_them_all():
    layout = MazeLayout(7)
    env = MazeEnv(size=7, episode_length=10_000)
    goal, start = (1, 2), (1, 1)  # the goal is one step to the right of the start
    env.reset(seed=5, options={"goal": goal, "start": start})
    landed = set()
    for _ in range(1500):
        env.unwrapped.position = start  # put the agent back next to the goal and walk into it
        obs, reward, _, _, info = env.step(RIGHT)
        assert info["reached_goal"] and reward == 10.0
        position = info["position"]
        assert not layout.walls[position] and position != goal
        landed.add(position)
    assert landed == {tuple(c) for c in layout.open_cells} - {goal}


def test_draw_open_cell_except_never_returns_the_excluded_cell():
    layout = MazeLayout(5)  # 5×5: 9 open cells
    rng = np.random.default_rng(0)
    for excluded in layout.open_cells:
        draws = {draw_open_cell_except(rng, layout, excluded) for _ in range(300)}
        assert tuple(excluded) not in draws and len(draws) == len(layout.open_cells) - 1


def test_observation_layout_at_a_corner_after_a_wall_bump():
    env = MazeEnv(size=13, episode_length=200, wall_penalty=0.5)
    obs, info = env.reset(seed=0, options={"goal": (11, 11), "start": (1, 1)})
    expected = np.array([1, 1, 1,  1, 0, 0,  1, 0, 1,  # row 0 border; (1, 0) border; (2, 0) border, (2, 2) pillar
                         0, 1, 0 / 200, 0,  0, 0, 0, 0], dtype=np.float32)
    np.testing.assert_array_equal(obs, expected)
    obs, reward, terminated, truncated, info = env.step(UP)  # into the border: stays, pays the penalty
    assert info["position"] == (1, 1) and reward == -0.5 and not terminated and not truncated
    expected[11], expected[12], expected[13] = 1 / 200, -0.5, 1.0
    np.testing.assert_array_equal(obs, expected)
    obs, reward, *_ , info = env.step(RIGHT)
    assert info["position"] == (1, 2) and reward == 0.0
    np.testing.assert_array_equal(obs[:9], [1, 1, 1, 0, 0, 0, 0, 1, 0])  # (2, 1) open, (2, 2) pillar, (2, 3) open
    np.testing.assert_array_equal(obs[9:], np.array([0, 1, 2 / 200, 0, 0, 0, 0, 1], dtype=np.float32))
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_start_is_the_centre_and_the_previous_reward_shows_a_goal_hit():
    env = MazeEnv(size=9)
    obs, info = env.reset(seed=3, options={"goal": (4, 5)})
    assert info["position"] == (4, 4)
    np.testing.assert_array_equal(obs[:9], np.zeros(9))  # the centre's neighbours are all open
    obs, reward, *_ , info = env.step(RIGHT)
    assert reward == 10.0 and obs[12] == 10.0 and info["position"] != (4, 5)


def test_wall_penalty_defaults_to_zero_and_episode_ends_after_its_length():
    env = MazeEnv(size=9, episode_length=5)
    env.reset(seed=0, options={"goal": (7, 7), "start": (1, 1)})
    for step in range(5):
        _, reward, terminated, truncated, info = env.step(UP)
        assert reward == 0.0 and info["position"] == (1, 1)
        assert terminated == (step == 4) and not truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(UP)


def test_random_start_is_an_open_cell_other_than_the_goal_and_varies():
    env = MazeEnv(size=9, random_start=True)
    env.reset(seed=0)
    starts = set()
    for _ in range(200):
        _, info = env.reset()
        assert not env.layout.walls[info["position"]] and info["position"] != info["goal"]
        starts.add(info["position"])
    assert len(starts) > 20


def _play(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        trace.append(np.append(obs, reward))
        if terminated:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


def test_seeded_episodes_repeat_and_different_seeds_differ():
    actions = np.random.default_rng(0).integers(0, 4, size=150)
    a = _play(MazeEnv(size=7, episode_length=50), 11, actions)
    b = _play(MazeEnv(size=7, episode_length=50), 11, actions)
    c = _play(MazeEnv(size=7, episode_length=50), 12, actions)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    first = BatchedMaze(4, MazeConfig(size=7)).reset(seed=1)
    again = BatchedMaze(4, MazeConfig(size=7)).reset(seed=1)
    torch.testing.assert_close(first, again)


@pytest.mark.parametrize("size,random_start", [(5, False), (7, False), (7, True)])
def test_single_and_batched_forms_agree_step_for_step(size, random_start):
    config = MazeConfig(size=size, episode_length=60, wall_penalty=0.25, random_start=random_start)
    num_mazes, seed, episodes = 8, 42, 3
    batched = BatchedMaze(num_mazes, config)
    singles = [MazeEnv(**config.as_dict()) for _ in range(num_mazes)]
    actions = torch.as_tensor(np.random.default_rng(1).integers(0, 4, size=(episodes, config.episode_length,
                                                                           num_mazes)))
    hits = 0
    for episode in range(episodes):
        obs = batched.reset(seed=seed if episode == 0 else None)
        single_obs = [env.reset(seed=s if episode == 0 else None)[0]
                      for env, s in zip(singles, maze_seeds(seed, num_mazes))]
        np.testing.assert_array_equal(obs.numpy(), np.stack(single_obs))
        np.testing.assert_array_equal(batched.goals.numpy(), [env.goal for env in singles])
        for t in range(config.episode_length):
            obs, rewards, done = batched.step(actions[episode, t])
            for b, env in enumerate(singles):
                single, reward, terminated, _, info = env.step(int(actions[episode, t, b]))
                np.testing.assert_array_equal(obs[b].numpy(), single)
                assert rewards[b].item() == reward
                assert tuple(batched.positions[b].tolist()) == info["position"]
                assert bool(batched.reached[b]) == info["reached_goal"]
                assert terminated == done
                hits += info["reached_goal"]
    assert hits > 10  # the comparison covered teleports, not only walking


def test_maze_seeds_are_distinct_per_maze_and_stable():
    seeds = maze_seeds(0, 30)
    assert len(set(seeds)) == 30 and seeds == maze_seeds(0, 30) and seeds[:5] == maze_seeds(0, 5)
    assert maze_seeds(1, 30) != seeds
    with pytest.raises(ValueError, match="non-negative"):
        maze_seeds(-1, 3)


def test_fixed_goals_in_the_batched_form_and_its_positions():
    env = BatchedMaze(2, MazeConfig(size=9))
    env.reset(seed=0, goals=[[4, 5], [1, 1]])
    obs, rewards, _ = env.step(torch.tensor([RIGHT, UP]))
    assert rewards.tolist() == [10.0, 0.0]
    assert env.reached.tolist() == [True, False]
    assert tuple(env.positions[0].tolist()) != (4, 5) and tuple(env.positions[1].tolist()) == (3, 4)
    with pytest.raises(ValueError, match="centre"):
        env.reset(goals=[[4, 4], [1, 1]])


def test_gymnasium_id_is_registered_and_passes_the_environment_checker():
    env = gymnasium.make("warpkit/Maze-v0", size=9, episode_length=30, render_mode="rgb_array")
    assert env.unwrapped.config.size == 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings count as failures
        check_env(env.unwrapped)
        check_env(MazeEnv(), skip_render_check=True)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (9 * 16, 9 * 16, 3)
    text = MazeEnv(size=7, render_mode="ansi")
    text.reset(seed=0, options={"goal": (1, 1)})
    assert text.render().splitlines() == ["#######", "#G....#", "#.#.#.#", "#..A..#", "#.#.#.#", "#.....#", "#######"]


def test_shortest_distances_go_around_pillars():
    from warpkit.envs.maze import shortest_distances

    distances = shortest_distances(make_walls(7), (2, 1))
    assert distances[2, 3] == 4  # (2, 2) is a pillar: up, right, right, down
    assert distances[2, 1] == 0 and distances[1, 1] == 1 and distances[5, 5] == 7
    assert distances[0, 0] == -1 and distances[2, 2] == -1  # walls
    with pytest.raises(ValueError, match="wall"):
        shortest_distances(make_walls(7), (2, 2))


def test_returns_after_teleports_and_path_segments_on_a_hand_made_trajectory():
    from warpkit.viz.maze import path_segments, returns_after_teleports

    walls = make_walls(7)
    goal = (1, 3)
    # t: 0 (1,1) -> (1,2) -> (1,3)=goal, teleported to (5,5) -> (4,5) -> (3,5) -> (3,4) -> (3,3) -> (2,3) -> goal
    cells = np.array([(1, 1), (1, 2), (5, 5), (4, 5), (3, 5), (3, 4), (3, 3), (2, 3), (4, 1)])[:, None, :]
    reached = np.zeros((8, 1), dtype=bool)
    reached[[1, 7], 0] = True
    shortest, taken = returns_after_teleports(walls, cells, np.array([goal]), reached)
    assert shortest.tolist() == [6] and taken.tolist() == [6]  # from (5, 5): 4 up + 2 left, walked straight back
    segments = path_segments(cells[:, 0], reached[:, 0])
    assert [len(s) for s in segments] == [2, 6, 1]
    assert segments[1][0].tolist() == [5, 5] and segments[2][0].tolist() == [4, 1]
