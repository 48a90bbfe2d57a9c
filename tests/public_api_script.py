"""warpkit through its public API alone: no name in this file starts with an underscore (tests/test_public_api.py
checks the source and runs it).

    python tests/public_api_script.py WORKDIR

Meta-trains a tiny warped conv net (Warp-Leap) for a few iterations on 5-way 1-shot tasks of synthetic strokes,
saves it to WORKDIR/learner.pt, writes a 5-way task as PNG files (one folder per class: one support image, two
query images), then, in a new process, loads the learner from the file alone, builds the task from the PNG files
and predicts the query images' labels.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import warpkit
from warpkit.models.omniglot_net import OmniglotNet
from warpkit.tasks import ClassificationTask

WAYS = 5


def strokes(kind, count, rng):
    """``count`` noisy 28×28 drawings (ink = 1) of stroke family ``kind``: a bar at one of a few angles/places."""
    images = np.zeros((count, 28, 28), dtype=np.float32)
    for index in range(count):
        angle = kind * np.pi / 7 + rng.normal(0, 0.08)
        offset = rng.normal(0, 1.0, size=2)
        for t in np.linspace(-10, 10, 80):
            row = int(round(14 + offset[0] + t * np.sin(angle)))
            column = int(round(14 + offset[1] + t * np.cos(angle)))
            images[index, max(row - 1, 0):row + 1, max(column - 1, 0):column + 1] = 1.0
    return images


def synthetic_task(seed):
    """A 5-way 1-shot task: five random stroke families, one support and three query drawings each."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(7, size=WAYS, replace=False)
    drawings = torch.from_numpy(np.stack([strokes(kind, 4, rng) for kind in kinds])).unsqueeze(2)
    labels = torch.arange(WAYS)
    return ClassificationTask(drawings[:, 0], labels, drawings[:, 1:].flatten(0, 1), labels.repeat_interleave(3),
                              seed=seed)


def train(workdir):
    warpkit.seed_everything(0)
    model = OmniglotNet(ways=WAYS, filters=4, warp="conv3")
    learner = warpkit.MetaLearner(model, torch.nn.functional.cross_entropy, inner=warpkit.InnerLoop(lr=0.1, steps=3),
                                  warp=warpkit.WarpTraining(lr=0.05),
                                  init=warpkit.InitTraining(warpkit.Leap(simplified=True)))
    for iteration in range(3):
        stats = learner.meta_step([synthetic_task(2 * iteration), synthetic_task(2 * iteration + 1)])
        print(f"meta-iteration {stats.iteration}: task loss {stats.task_loss_first:.3f} -> {stats.task_loss_last:.3f}")
    learner.save(workdir / "learner.pt")
    rng = np.random.default_rng(100)
    for label, kind in enumerate(rng.choice(7, size=WAYS, replace=False)):
        folder = workdir / "task" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for number, drawing in enumerate(strokes(kind, 3, rng)):
            Image.fromarray(np.round(255 * (1 - drawing)).astype(np.uint8)).save(folder / f"drawing{number}.png")


def predict(workdir):
    learner = warpkit.load_learner(workdir / "learner.pt")
    task = ClassificationTask.from_folder(workdir / "task", shots=1)
    labels = learner.fit_predict(task, task.query_x)
    one = learner.predict(learner.fit(task), warpkit.load_image(workdir / "task" / "class0" / "drawing1.png")[None])
    print(f"{task.ways}-way {task.shots}-shot from PNG files: predicted {labels.tolist()}, true {task.query_y.tolist()}")
    print(f"a single image: predicted {one.tolist()}")


workdir, mode = Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "train"
if mode == "train":
    train(workdir)
    subprocess.run([sys.executable, sys.argv[0], str(workdir), "predict"], check=True)  # a new process
else:
    predict(workdir)
