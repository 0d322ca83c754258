#!/usr/bin/python3
"""The PyTorch twin of examples/makemore.c: the same word list, split,
stream, models, recipe (Adam, clipping at norm 1, batch, steps) and
evaluation, so held-out losses and time per step can be compared in one run
(bench/makemore_compare). Options as the C program's."""
import argparse
import math
import sys
import time

import torch
import torch.nn as nn

VOCAB, MLP_CONTEXT, SEQ_CONTEXT = 27, 3, 16


def load_words(path, limit):
    train, held, kept = [0], [0], 0
    with open(path, encoding="latin-1") as f:
        for line in f:
            w = line.rstrip("\r\n")
            if not w or len(w) > 40 or not all("a" <= c <= "z" for c in w):
                continue
            if limit and kept >= limit:
                break
            s = held if kept % 10 == 0 else train
            s.extend(ord(c) - ord("a") + 1 for c in w)
            s.append(0)
            kept += 1
    return torch.tensor(train), torch.tensor(held), kept


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 10)
        self.hidden = nn.Linear(MLP_CONTEXT * 10, 200)
        self.out = nn.Linear(200, VOCAB)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(self.emb(x).flatten(1))))


class LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 64)
        self.lstm = nn.LSTM(64, 128, batch_first=True)
        self.out = nn.Linear(128, VOCAB)

    def forward(self, x):
        return self.out(self.lstm(self.emb(x))[0])


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 64)
        self.pos = nn.Embedding(SEQ_CONTEXT, 64)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(2))
        self.ln = nn.LayerNorm(64)
        self.out = nn.Linear(64, VOCAB)
        self.register_buffer(
            "mask", torch.triu(torch.full((SEQ_CONTEXT, SEQ_CONTEXT), float("-inf")), 1))

    def forward(self, x):
        h = self.emb(x) + self.pos(torch.arange(x.shape[1]))
        for b in self.blocks:
            h = b(h, src_mask=self.mask)
        return self.out(self.ln(h))


def examples(seq, s, pos):
    """Contexts and targets at stream positions pos (as example() in makemore.c)."""
    if seq:
        idx = pos[:, None] + torch.arange(SEQ_CONTEXT)[None, :]
        return s[idx], s[idx + 1]
    idx = pos[:, None] - MLP_CONTEXT + torch.arange(MLP_CONTEXT)[None, :]
    x = torch.where(idx >= 0, s[idx.clamp(min=0)], torch.zeros_like(idx))
    return x, s[pos]


def loss_of(model, x, y):
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


@torch.no_grad()
def evaluate(model, seq, s, chars, batch):
    model.eval()
    step, first = (SEQ_CONTEXT, 0) if seq else (1, 1)
    last = len(s) - SEQ_CONTEXT - 1 if seq else len(s) - 1
    total, counted, p = 0.0, 0, first
    while p <= last and counted < chars:
        pos = torch.arange(p, min(last + 1, p + batch * step), step)
        p = int(pos[-1]) + step
        x, y = examples(seq, s, pos)
        c = y.numel()
        total += loss_of(model, x, y).item() * c
        counted += c
    model.train()
    return total / counted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "lstm", "transformer"])
    ap.add_argument("--words", default="/usr/share/dict/american-english")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--eval-chars", type=int, default=20000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    train, held, nwords = load_words(a.words, a.limit)
    seq = a.model != "mlp"
    model = {"mlp": MLP, "lstm": LSTM, "transformer": Transformer}[a.model]()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model {a.model}: {nparams} parameters; {nwords} words "
          f"({len(train)} train chars, {len(held)} held-out chars)")
    lo, hi = (0, len(train) - SEQ_CONTEXT - 1) if seq else (1, len(train) - 1)
    t0, recent = time.perf_counter(), 0.0
    for step in range(1, a.steps + 1):
        pos = torch.randint(lo, hi + 1, (a.batch,))
        x, y = examples(seq, train, pos)
        loss = loss_of(model, x, y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent += loss.item()
        if step % 500 == 0 or step == a.steps:
            k = step % 500 or 500
            print(f"step {step}: train batch loss {recent / k:.4f} (mean of the last {k})")
            recent = 0.0
    per_step = (time.perf_counter() - t0) / max(a.steps, 1)
    tr = evaluate(model, seq, train, a.eval_chars, a.batch)
    he = evaluate(model, seq, held, len(held), a.batch)
    print(f"train loss {tr:.4f} nats/char (first {a.eval_chars} chars)")
    print(f"held-out loss {he:.4f} nats/char")
    print(f"time per step {per_step * 1e3:.3f} ms (batch {a.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
