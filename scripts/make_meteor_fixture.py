#!/usr/bin/env python3
"""Writes tests/fixtures/metrics/meteor_extra.json.gz: METEOR 1.5 statistics and scores from
pycocoevalcap 1.2's own wrapper and meteor-1.5.jar on cases built to reach the corners the
fakecap set rarely touches (normalisation of raw text, long and shuffled candidates, candidates
against another image's references, weird punctuation and unicode).

Every case is {"kind", "candidate", "references", "meteor_stats", "METEOR"}; the file also holds
the corpus score of all cases. Deterministic (seeded). Needs Java and the wheel unpacked:

    pip download pycocoevalcap==1.2 --no-deps -d /tmp/pcoco
    (cd /tmp/pcoco && unzip -q -o pycocoevalcap-1.2-py3-none-any.whl -d x)
    python3 scripts/make_meteor_fixture.py /tmp/pcoco/x FIXTURES_DIR OUT.json.gz [--all]

FIXTURES_DIR is the shared metric fixtures (per_image/*.json.gz and ptb_tokenizer_fixture_*.jsonl).
Without --all, at most PER_KIND cases of each kind are kept (the committed file); with --all,
every case (for a full local comparison).
"""
import gzip
import json
import random
import sys
from collections import defaultdict

PER_KIND = 400

pkg, fixtures, out = sys.argv[1], sys.argv[2], sys.argv[3]
keep_all = '--all' in sys.argv
sys.path.insert(0, pkg)
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402

rng = random.Random(20250611)
fake = json.load(gzip.open(f'{fixtures}/per_image/fakecap.per_image.json.gz'))
cases = defaultdict(list)


def add(kind, cand, refs):
    cases[kind].append((cand, list(refs)))


n = len(fake)
for i, row in enumerate(fake):
    refs = row['references']
    k = i % len(refs)
    add('ref_vs_rest', refs[k], refs[:k] + refs[k + 1:])
    add('cross_image', row['candidate'], fake[(i + 1) % n]['references'])
    words = refs[k].split()
    rng.shuffle(words)
    add('shuffled', ' '.join(words), refs[:k] + refs[k + 1:])
    if i % 3 == 0:
        long = ' '.join(refs[:4])
        add('long', long, refs[1:])
    if i % 5 == 0:
        # A candidate built from another candidate's words and this image's: many partial
        # matches, ties in the search.
        mix = row['candidate'].split() + fake[(i + 7) % n]['candidate'].split()
        rng.shuffle(mix)
        add('mixed', ' '.join(mix[: rng.randint(3, len(mix))]), refs)

rows = [json.loads(line) for name in ('val2014', 'train2014')
        for line in open(f'{fixtures}/ptb_tokenizer_fixture_{name}.jsonl')]
by_image = defaultdict(list)
for r in rows:
    by_image[r['image_id']].append(r)
for img in sorted(by_image):
    group = by_image[img]
    if len(group) < 2:
        continue
    add('ptb_group', group[0]['ptb'], [g['ptb'] for g in group[1:]])
    # Raw text: case, punctuation, quotes, dots and dashes reach the normaliser.
    add('raw_group', group[0]['raw'].replace('\n', ' '), [g['raw'].replace('\n', ' ') for g in group[1:]])

weird = [
    'a man ||| with a hat', 'a  man  with   a hat', '...', 'u.s. army st. 3.5 no. 5 mr. smith',
    'a dog -lrb- brown -rrb- with toys', "the dog 's bone is n't here", 'x--y a-b-c 1,000,000 a,b,c',
    'it costs $ 5.50 or 100 % more', '“quoted” ‘single’ words – dash — em', 'a caf\u00e9 na\u00efve r\u00e9sum\u00e9',
    'ﬁsh and ﬂowers', 'Π ΣΑΣ σας', 'dogs  running  running  running', 'the the the the',
    'a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a',
    "'s 't 're 've", '1990 \'s music', "rock 'n' roll", 'e.g. i.e. etc.', 'a.b.c hat.a',
]
fake_refs = fake[0]['references']
for w in weird:
    add('weird', w, fake_refs)
    add('weird_ref', fake_refs[0], [w, fake_refs[1]])

selected = []
for kind in sorted(cases):
    items = cases[kind]
    if not keep_all and len(items) > PER_KIND:
        items = rng.sample(items, PER_KIND)
    selected += [(kind, c, r) for c, r in items]

m = Meteor()
stats = []
for kind, cand, refs in selected:
    stats.append(m._stat(cand, refs))
# The EVAL step exactly as Meteor.compute_score sends it.
m.lock.acquire()
m.meteor_p.stdin.write(('EVAL' + ''.join(' ||| ' + s for s in stats) + '\n').encode())
m.meteor_p.stdin.flush()
scores = [float(m.meteor_p.stdout.readline().strip()) for _ in stats]
corpus = float(m.meteor_p.stdout.readline().strip())
m.lock.release()

doc = {
    'description': 'METEOR 1.5 (pycocoevalcap 1.2 meteor-1.5.jar -l en -norm, via its meteor.py '
                   'protocol) on cases built by scripts/make_meteor_fixture.py',
    'corpus_METEOR': corpus,
    'cases': [{'kind': k, 'candidate': c, 'references': r, 'meteor_stats': s, 'METEOR': sc}
              for (k, c, r), s, sc in zip(selected, stats, scores)],
}
with gzip.GzipFile(out, 'wb', mtime=0) as f:
    f.write(json.dumps(doc, ensure_ascii=False).encode())
counts = defaultdict(int)
for k, _, _ in selected:
    counts[k] += 1
print(f'{len(selected)} cases', dict(counts), 'corpus', corpus)
