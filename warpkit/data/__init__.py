"""warpkit.data: Omniglot and its offline glyph stand-in (one alphabet = one task), augmentation, sine tasks, and a
user's own images: :func:`load_image` (the lessons' preprocessing) and
:class:`~warpkit.data.classification.ClassificationTask` (N-way K-shot, from tensors or a folder of images)."""

# Omniglot and its offline stand-in (issue 5): one alphabet = one task
from warpkit.data.alphabet_tasks import (  # noqa: E402
    AlphabetSplit,
    AlphabetTask,
    AlphabetTaskSampler,
    eligible_alphabets,
    load_alphabet_dataset,
    split_alphabets,
)
from warpkit.data.augment import OMNIGLOT_AUGMENTATION, RandomAffine, random_affine  # noqa: E402
from warpkit.data.glyphs import load_glyphs  # noqa: E402
from warpkit.data.omniglot import (  # noqa: E402
    AlphabetDataset,
    OmniglotChecksumError,
    OmniglotCorruptError,
    OmniglotError,
    OmniglotNotFoundError,
    TooFewCharactersError,
    download_omniglot,
    find_omniglot_sets,
    load_omniglot,
)
from warpkit.data.classification import ClassificationTask  # noqa: E402
from warpkit.data.images import load_image, load_images  # noqa: E402
from warpkit.data.omniglot import area_resize, to_uint8  # noqa: E402
