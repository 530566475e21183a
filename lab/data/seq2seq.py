"""Sequence-to-sequence tasks generated from a seed (no download): reverse, sort, add, dates.

Every split is drawn once from `seed`, with no source string shared between splits. One vocabulary of
characters serves source and target: `<pad>` (0), `<bos>` (1), `<eos>` (2), then the task's characters.
Batches are (src, src_len, tgt) with src (B, S) and tgt (B, T) padded with 0; tgt ends in `<eos>` and
has no `<bos>` (the model prepends it), so padding and masks are handled once, here and in the model.
"""

from __future__ import annotations

from lab.contracts import DataFacts

import datetime as dt
import random
from collections.abc import Callable

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from lab.checks import check_choice, check_ints
from lab.data.base import check_batch_size

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
DIGITS = "0123456789"
TASKS = ("reverse", "sort", "add", "dates")


# ---- the tasks: (rng, min_len, max_len) -> (source, target) ------------------------------------------------------
def _digits(rng: random.Random, min_len: int, max_len: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(rng.randint(min_len, max_len)))


def reverse_pair(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    s = _digits(rng, min_len, max_len)
    return s, s[::-1]


def sort_pair(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    s = _digits(rng, min_len, max_len)
    return s, "".join(sorted(s))


def add_pair(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    """Two numbers of min_len..max_len digits each (no leading zeros) -> their sum."""

    def number() -> int:
        n = rng.randint(min_len, max_len)
        return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)

    a, b = number(), number()
    return f"{a}+{b}", str(a + b)


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Human-written dates: every format is unambiguous (slashes are month/day/year, dots day.month.year; a
# two-digit year yy means 19yy from 50 on and 20yy below, matching the years the task draws: 1950-2049).
DATE_FORMATS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d:%A} {d.day} {d:%B} {d.year}".lower(),  # tuesday 3 march 1987
    lambda d: f"{d.month}/{d.day}/{d:%y}",  # 3/3/87
    lambda d: f"{d:%B} {_ordinal(d.day)}, {d.year}",  # March 3rd, 1987
    lambda d: f"{d.day} {d:%b} {d.year}".lower(),  # 3 mar 1987
    lambda d: f"{d:%d.%m.%Y}",  # 03.03.1987
    lambda d: f"{d:%b} {d.day}, {d.year}",  # Mar 3, 1987
    lambda d: f"{d:%a}, {d.day} {d:%b} {d.year}",  # Tue, 3 Mar 1987
    lambda d: f"{d:%B} {d.day} {d.year}".upper(),  # MARCH 3 1987
    lambda d: f"the {_ordinal(d.day)} of {d:%B} {d.year}".lower(),  # the 3rd of march 1987
    lambda d: f"{d.month}/{d.day}/{d.year}",  # 3/3/1987
    lambda d: f"{d.day} {d:%B} {d:%y}".lower(),  # 3 march 87
    lambda d: f"{d:%A}, {d:%B} {d.day}, {d.year}",  # Tuesday, March 3, 1987
)
DATE_RANGE = (dt.date(1950, 1, 1), dt.date(2049, 12, 31))


def dates_pair(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    """A date between 1950 and 2049 in a random human format -> ISO 8601 (min_len / max_len do not apply)."""
    start, end = DATE_RANGE
    d = start + dt.timedelta(days=rng.randint(0, (end - start).days))
    return rng.choice(DATE_FORMATS)(d), d.isoformat()


PAIRS: dict[str, Callable[[random.Random, int, int], tuple[str, str]]] = {
    "reverse": reverse_pair, "sort": sort_pair, "add": add_pair, "dates": dates_pair}


def task_vocab(task: str) -> list[str]:
    """The task's tokens, specials first: fixed by the task alone, so every split and checkpoint agree."""
    if task == "dates":
        chars = set(" ,-./0123456789")
        for month in range(1, 13):
            d = dt.date(2001, month, 1)
            for fmt in ("%A", "%a", "%B", "%b"):  # weekday names need a week: 2001-01-01 is a monday
                for day in range(7):
                    chars |= set(f"{d + dt.timedelta(days=day):{fmt}}")
        chars |= {c.lower() for c in chars} | {c.upper() for c in chars} | set("thesndro f")
        return [*SPECIALS, *sorted(chars)]
    return [*SPECIALS, *DIGITS, *(["+"] if task == "add" else [])]


def generate(task: str, n: int, min_len: int, max_len: int, rng: random.Random, seen: set[str]) -> list[tuple[str, str]]:
    """n pairs whose sources are not in `seen` (which grows); ValueError when the task has too few."""
    pairs, draw, tries = [], PAIRS[task], 0
    while len(pairs) < n:
        src, tgt = draw(rng, min_len, max_len)
        tries += 1
        if src not in seen:
            seen.add(src)
            pairs.append((src, tgt))
        elif tries > 20 * n + 1000:
            raise ValueError(f"data.task={task!r} with lengths {min_len}..{max_len} has too few distinct inputs for "
                             f"{n} more examples ({len(seen)} found); widen data.min_len..data.max_len or ask for fewer "
                             "examples (data.num_train, data.num_val, data.num_test).")
    return pairs


class Seq2SeqDataset(Dataset):
    """(source, target) strings as token ids: src (S,), tgt (T,) ending in <eos>."""

    def __init__(self, pairs: list[tuple[str, str]], vocab: list[str]) -> None:
        self.pairs = pairs
        self.stoi = {t: i for i, t in enumerate(vocab)}

    def __len__(self) -> int:
        return len(self.pairs)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        src, tgt = self.pairs[i]
        return torch.tensor(self.encode(src)), torch.tensor([*self.encode(tgt), EOS])


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad a batch: src (B, S_max), src_len (B,), tgt (B, T_max), padding = PAD (0)."""
    srcs, tgts = zip(*batch, strict=True)
    pad = torch.nn.utils.rnn.pad_sequence
    return (pad(list(srcs), batch_first=True, padding_value=PAD), torch.tensor([len(s) for s in srcs]),
            pad(list(tgts), batch_first=True, padding_value=PAD))


class LengthBucketBatchSampler(BatchSampler):
    """Training batches of similar source lengths, so a batch pads (and the RNN steps) little: the sampler's
    order is cut into pools of `pool` batches, each pool sorted by length and cut into batches, and the batches
    shuffled. Every index comes once per epoch. A BatchSampler with `sampler`, `batch_size` and `drop_last`, so
    Lightning can re-create it around a DistributedSampler under DDP."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, lengths: list[int], pool: int = 50
                 ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths, self.pool = lengths, pool

    def __iter__(self):
        indices, size = list(self.sampler), self.batch_size * self.pool
        batches = []
        for start in range(0, len(indices), size):
            chunk = sorted(indices[start:start + size], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        for i in torch.randperm(len(batches)).tolist():
            yield batches[i]


class Seq2SeqDataModule(DataFacts, LightningDataModule):
    """A generated seq2seq task with fixed, disjoint train / val / test splits drawn from `seed`.

    `length_buckets` ([[lo, hi], ...] source lengths, optional) asks the model to report test sequence
    accuracy per bucket of source lengths (test/seq_acc_len<lo>-<hi>)."""

    def __init__(self, task: str = "reverse", min_len: int = 5, max_len: int = 10, num_train: int = 20000,
                 num_val: int = 1000, num_test: int = 2000, seed: int = 0, batch_size: int = 128,
                 eval_batch_size: int = 500, num_workers: int = 0,
                 length_buckets: list[list[int]] | None = None, bucket_by_length: bool = True) -> None:
        super().__init__()
        check_choice("data.task", task, TASKS)
        check_ints("data.", min_len=(min_len, 1), max_len=(max_len, 1), num_train=(num_train, 1),
                   num_val=(num_val, 1), num_test=(num_test, 1), batch_size=(batch_size, 1),
                   eval_batch_size=(eval_batch_size, 1), num_workers=(num_workers, 0))
        check_batch_size(batch_size, num_train, sized_by=("num_train",))
        if min_len > max_len:
            raise ValueError(f"data.min_len={min_len} is greater than data.max_len={max_len}: the length range "
                             "min_len..max_len must not be empty.")
        self.length_buckets = [tuple(b) for b in (length_buckets or [])]
        for b in self.length_buckets:
            if len(b) != 2 or b[0] > b[1]:
                raise ValueError(f"data.length_buckets has {list(b)!r}: each bucket is [lo, hi] with lo <= hi.")
        self.task, self.min_len, self.max_len, self.seed = task, min_len, max_len, seed
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.bucket_by_length = bucket_by_length
        self.vocab = task_vocab(task)
        self.train_set = self.val_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        rng, seen = random.Random(self.seed), set()
        # test first, then val, then train: the held-out splits stay the same when num_train changes
        test = generate(self.task, self.num_test, self.min_len, self.max_len, rng, seen)
        val = generate(self.task, self.num_val, self.min_len, self.max_len, rng, seen)
        train = generate(self.task, self.num_train, self.min_len, self.max_len, rng, seen)
        self.train_set, self.val_set, self.test_set = (Seq2SeqDataset(p, self.vocab) for p in (train, val, test))

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if not self.bucket_by_length:
            return self._loader(self.train_set, self.batch_size, True)
        lengths = [len(src) for src, _ in self.train_set.pairs]
        batches = LengthBucketBatchSampler(RandomSampler(self.train_set), self.batch_size, False, lengths)
        return DataLoader(self.train_set, batch_sampler=batches, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, False)

    def max_target_len(self) -> int:
        """The longest target a decoder must write (with <eos>) for this task's lengths."""
        if self.task == "dates":
            return len("2000-01-01") + 1
        if self.task == "add":
            return self.max_len + 2
        return self.max_len + 1
