#!/usr/bin/env python3
"""Writes tests/fixtures/metrics/cider_reward_fixture.json: the SCST CIDEr-D reward on token
indices with fixed document frequencies, computed by pycocoevalcap 1.2's CiderScorer.

The reward's CiderD (ruotianluo/cider, AOANET.md 3.3) runs the same precook / counts2vec / sim
code as pycocoevalcap's CiderScorer; it only takes `document_frequency` and `ref_len` from the
pickle that prepro_ngrams.py wrote instead of from the evaluated references. So this script
counts the frequencies over synthetic "training" images the way prepro_ngrams.py does (index
strings with the EOS index 0 appended, one count per image through CiderScorer's own
compute_doc_freq) and then runs CiderScorer.compute_cider with those frequencies and
ref_len = log(number of training images).

Usage: pip install pycocoevalcap==1.2; python3 scripts/make_cider_reward_fixture.py
"""
import json
import os
import random

from pycocoevalcap.cider.cider_scorer import CiderScorer

rng = random.Random(20240611)
VOCAB = 40  # token ids 1..40; 0 is BOS/EOS/pad


def sentence(lo, hi):
    # Zipf-like draw so n-grams repeat across images and the idf varies.
    return [min(VOCAB, int(rng.paretovariate(1.1))) for _ in range(rng.randint(lo, hi))]


def to_str(seq):
    """array_to_str of misc/rewards.py: ids up to and including the first 0."""
    out = []
    for t in seq:
        out.append(str(t))
        if t == 0:
            break
    return " ".join(out)


# "Training" references: full tokens + EOS, as prepro_ngrams.py counts them.
train = [[sentence(3, 22) + [0] for _ in range(rng.randint(4, 6))] for _ in range(60)]
df_scorer = CiderScorer(n=4, sigma=6.0)
for refs in train:
    df_scorer.cook_append(None, [" ".join(map(str, r)) for r in refs])
df_scorer.compute_doc_freq()
df = df_scorer.document_frequency
# Snapshot now: scoring looks n-grams up in this defaultdict and so inserts zero counts.
df_entries = sorted(([int(w) for w in k], int(v)) for k, v in df.items())


class CountAs(list):
    """A list whose len() is the training image count: compute_cider takes
    ref_len = log(len(self.crefs)), which CiderD takes from the pickle instead."""

    def __init__(self, items, n):
        super().__init__(items)
        self.n = n

    def __len__(self):
        return self.n


batch = []
for img in range(10):
    # Labels as the h5 holds them: truncated at 16, zero-padded to 16.
    refs = []
    for _ in range(rng.randint(1, 7)):
        r = sentence(1, 22)[:16]
        refs.append(r + [0] * (16 - len(r)))
    if img % 3 == 0:
        # Share n-grams with the training set so the idf is not always log(N).
        refs[0] = (train[img][0][:-1] + [0] * 16)[:16]
    cands = []
    for j in range(5):
        c = sentence(0, 20)
        if j == 0 and img % 2 == 0:
            c = [t for t in refs[0] if t != 0][:20]  # a sample equal to a reference
        c = c[:20]
        if len(c) < 20:
            c = c + [0] * (20 - len(c))  # EOS then padding, as gen_result
        cands.append(c)
    scorer = CiderScorer(n=4, sigma=6.0)
    ref_strs = [to_str(r) for r in refs]
    for c in cands:
        scorer.cook_append(to_str(c), ref_strs)
    scorer.document_frequency = df
    scorer.crefs = CountAs(scorer.crefs, len(train))
    scores = scorer.compute_cider()
    batch.append({"refs": refs, "candidates": cands, "scores": [float(s) for s in scores]})

out = {
    "about": "SCST CIDEr-D reward fixture written by scripts/make_cider_reward_fixture.py "
    "with pycocoevalcap 1.2 CiderScorer (fixed df, ref_len = log(num_train_images))",
    "num_train_images": len(train),
    "train_refs": train,
    "df": [{"ngram": k, "count": v} for k, v in df_entries],
    "batch": batch,
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "metrics",
                    "cider_reward_fixture.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", os.path.normpath(path), "with", len(df_entries), "n-grams")
