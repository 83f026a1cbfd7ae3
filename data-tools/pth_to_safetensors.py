#!/usr/bin/env python3
"""Convert the authors' AoANet checkpoint (`model.pth`, a PyTorch state_dict) to safetensors.

    pip install torch safetensors
    python3 data-tools/pth_to_safetensors.py log_aoanet_rl/model.pth model.safetensors \
        [--infos log_aoanet_rl/infos_aoanet.pkl] [--dtype f32|f16|bf16|keep]

The reference saves `model.state_dict()` (train.py, save_checkpoint), whose keys are the names
aoanet's modules use (AOANET.md 1.11), so the tensors are written unchanged under their keys; a
`module.` prefix left by `nn.DataParallel` is removed. With `--infos`, the vocabulary (index ->
word) and the training options are stored as JSON strings in the file's `__metadata__` under
`vocab` and `opt`. aoanet loads the result strictly: `aoanet::io::load_named` names every
missing, unexpected or mis-shaped tensor.
"""

import argparse
import json
import os
import pickle

import torch
from safetensors.torch import save_file

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "keep": None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pth", help="the reference's model.pth")
    ap.add_argument("out", help="the .safetensors file to write")
    ap.add_argument("--infos", help="the reference's infos_<id>.pkl (vocabulary, options)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    args = ap.parse_args()

    state = torch.load(args.pth, map_location="cpu")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise SystemExit(f"{args.pth}: not a state_dict of tensors")
    tensors = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name in tensors:
            raise SystemExit(f"{args.pth}: {name!r} appears twice")
        if DTYPES[args.dtype] is not None and value.is_floating_point():
            value = value.to(DTYPES[args.dtype])
        # safetensors wants dense tensors that share no memory with each other.
        tensors[name] = value.detach().contiguous().clone()

    metadata = {"source": os.path.basename(args.pth)}
    if args.infos:
        with open(args.infos, "rb") as f:
            infos = pickle.load(f, encoding="latin1")
        metadata["vocab"] = json.dumps(infos["vocab"], sort_keys=True)
        opt = infos.get("opt")
        if opt is not None:
            metadata["opt"] = json.dumps(vars(opt), sort_keys=True, default=str)

    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, args.out)
    count = sum(t.numel() for t in tensors.values())
    print(f"{args.out}: {len(tensors)} tensors, {count} parameters")


if __name__ == "__main__":
    main()
