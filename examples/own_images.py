"""Meta-train a small warped net on Omniglot, save it, load it in a fresh process, adapt it to a 20-way one-shot task
made of your own PNG files and print the accuracy on the rest of them:   python examples/own_images.py FOLDER
FOLDER holds one sub-folder per class (FOLDER/<class>/<image>.png): each class's first image (in name order) is its
one shot, the others are queries. The meta-trained learner is saved to warped_net.pt in the current folder."""
import subprocess
import sys
import torch
import warpkit
from warpkit.data import eligible_alphabets, load_alphabet_dataset, split_alphabets
from warpkit.models.omniglot_net import OmniglotNet
from warpkit.tasks import ClassificationTask
torch.set_num_threads(1)  # small convolutions: one thread is fastest
def few_shot_task(images, seed, ways=20, queries=4):  # `ways` characters of an alphabet: 1 drawing each + queries
    g = torch.Generator().manual_seed(seed)
    x = images[torch.randperm(len(images), generator=g)[:ways]][:, torch.randperm(20, generator=g)[:1 + queries]]
    y = torch.arange(ways)
    return ClassificationTask(x[:, 0], y, x[:, 1:].flatten(0, 1), y.repeat_interleave(queries), seed=seed)
def meta_train(file, iterations=25, meta_batch=4):
    warpkit.seed_everything(0)
    data = load_alphabet_dataset()  # the Omniglot subsets when found, else the offline glyph alphabets
    split = split_alphabets(data, n_train=len(eligible_alphabets(data)) - 1, n_test=1)  # hold one alphabet out
    print(f"meta-training on {len(split.train)} {data.source} alphabets ({split.test[0]} held out)", flush=True)
    images = [data.images(alphabet) for alphabet in split.train]
    net = OmniglotNet(ways=20, filters=16, warp="conv3")  # a 3×3 conv warp after each of the 4 blocks
    learner = warpkit.MetaLearner(net, torch.nn.functional.cross_entropy, inner=warpkit.InnerLoop(lr=0.1, steps=10),
                                  warp=warpkit.WarpTraining(lr=0.05), init=warpkit.InitTraining(warpkit.Leap()))
    for i in range(iterations):
        learner.meta_step([few_shot_task(images[(i + j) % len(images)], meta_batch * i + j) for j in range(meta_batch)])
    learner.save(file)
def predict(folder, file):  # in a fresh process: the learner comes from the file alone
    learner, task = warpkit.load_learner(file), ClassificationTask.from_folder(folder, shots=1)
    labels = learner.fit_predict(task, task.query_x)  # adapt on the support images, then label the queries
    print(f"{task.ways}-way one-shot on {folder}: accuracy {(labels == task.query_y).float().mean():.1%} on "
          f"{len(labels)} query images (chance {1 / task.ways:.1%})")
if __name__ == "__main__":
    if sys.argv[2:] == ["--predict"]:
        predict(sys.argv[1], "warped_net.pt")
    else:
        meta_train("warped_net.pt")
        subprocess.run([sys.executable, __file__, sys.argv[1], "--predict"], check=True)  # a fresh process
