#!/usr/bin/env python3
"""Scores a combined-form caption file ([{image_name, captions, prediction}]) with pycocoevalcap
1.2 the way COCOEvalCap.evaluate does (PTB tokenizer on references and on candidates, then each
scorer), timing every step; prints one JSON object. Used by benches/metrics.rs for the
side-by-side comparison.

Usage: python3 scripts/bench_pycocoevalcap.py DATA.json [--meteor]
"""
import json
import resource
import sys
import time

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer


def main():
    path = sys.argv[1]
    with_meteor = "--meteor" in sys.argv[2:]
    data = json.load(open(path))
    gts = {i: [{"caption": c} for c in e["captions"]] for i, e in enumerate(data)}
    res = {i: [{"caption": e["prediction"]}] for i, e in enumerate(data)}
    out = {"images": len(data)}

    def cpu():
        a = resource.getrusage(resource.RUSAGE_SELF)
        b = resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    c0 = cpu()
    t0 = time.perf_counter()
    tok = PTBTokenizer()
    gts = tok.tokenize(gts)
    res = tok.tokenize(res)
    out["tokenize_s"] = time.perf_counter() - t0
    scorers = [("bleu", Bleu(4)), ("rouge", Rouge()), ("cider", Cider())]
    if with_meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        t = time.perf_counter()
        meteor = Meteor()
        out["meteor_startup_s"] = time.perf_counter() - t
        scorers.append(("meteor", meteor))
    for name, scorer in scorers:
        t = time.perf_counter()
        if name == "bleu":
            score, _ = scorer.compute_score(gts, res, verbose=0)
        else:
            score, _ = scorer.compute_score(gts, res)
        out[name + "_s"] = time.perf_counter() - t
        out[name] = score if not isinstance(score, list) else score
    out["total_s"] = time.perf_counter() - t0
    out["cpu_s"] = cpu() - c0  # Python + Java children, user + system
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["peak_rss_mb_python"] = self_kb / 1024
    out["peak_rss_mb_java_children"] = child_kb / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
