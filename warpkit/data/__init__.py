"""warpkit.data"""

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
