"""Seq2seq data, attention, decoding and the module's training paths, with known answers."""

import datetime as dt
import itertools
import math
import random
from functools import partial

import pytest
import torch

from lab.data.seq2seq import BOS, DATE_FORMATS, EOS, PAD, Seq2SeqDataModule, collate, dates_pair, task_vocab
from lab.models.seq2seq import RNNSeq2Seq, Seq2Seq, TransformerSeq2Seq
from lab.models.seq2seq.attention import Attention
from lab.models.seq2seq.decoding import beam_search, greedy
from lab.models.seq2seq.module import compare
from lab.models.seq2seq.transformer import sinusoidal_positions


def module(dm, **net_kw) -> Seq2Seq:
    net = (TransformerSeq2Seq(len(dm.vocab), d_model=32, nhead=2, dim_feedforward=64, dropout=0.0)
           if net_kw.pop("transformer", False) else RNNSeq2Seq(len(dm.vocab), hidden_size=32, embed_dim=16, **net_kw))
    return Seq2Seq(net, partial(torch.optim.Adam, lr=1e-3), vocab=dm.vocab, max_output_len=dm.max_target_len())


def small(task="reverse", **kw) -> Seq2SeqDataModule:
    dm = Seq2SeqDataModule(task=task, num_train=300, num_val=50, num_test=50, **kw)
    dm.setup()
    return dm


# ---- data ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["reverse", "sort", "add", "dates"])
def test_splits_are_fixed_by_the_seed_and_share_no_source(task):
    a, b, c = small(task), small(task), small(task, seed=1)
    assert a.train_set.pairs == b.train_set.pairs and a.test_set.pairs == b.test_set.pairs
    assert a.train_set.pairs != c.train_set.pairs
    sources = [{s for s, _ in ds.pairs} for ds in (a.train_set, a.val_set, a.test_set)]
    assert sum(map(len, sources)) == 400 and len(set.union(*sources)) == 400


def test_targets_are_the_tasks_answers():
    for s, t in small("reverse").train_set.pairs:
        assert t == s[::-1] and 5 <= len(s) <= 10
    for s, t in small("sort").train_set.pairs:
        assert t == "".join(sorted(s))
    for s, t in small("add", min_len=1, max_len=4).train_set.pairs:
        x, y = s.split("+")
        assert int(t) == int(x) + int(y) and 1 <= len(x) <= 4 and 1 <= len(y) <= 4
    for _, t in small("dates").train_set.pairs:
        assert dt.date.fromisoformat(t)


def test_date_formats_write_the_examples_of_the_primers():
    d = dt.date(1987, 3, 3)
    written = {f(d) for f in DATE_FORMATS}
    assert {"tuesday 3 march 1987", "3/3/87", "March 3rd, 1987"} <= written
    assert {f(dt.date(2011, 11, 11)) for f in DATE_FORMATS} >= {"the 11th of november 2011", "11/11/11"}
    assert DATE_FORMATS[1](dt.date(2012, 5, 9)) == "5/9/12"  # month/day/yy: two-digit years below 50 are 20yy


def test_every_date_string_is_in_the_dates_vocabulary():
    vocab, rng = set(task_vocab("dates")), random.Random(0)
    for _ in range(5000):
        src, tgt = dates_pair(rng, 1, 1)
        assert set(src) | set(tgt) <= vocab


def test_batches_are_padded_with_lengths_and_eos():
    dm = small()
    ds = dm.train_set
    src, src_len, tgt = collate([ds[0], ds[1]])
    for i in range(2):
        s, t = ds.pairs[i]
        assert src_len[i] == len(s) and (src[i, len(s):] == PAD).all()
        assert [dm.vocab[j] for j in src[i, : len(s)].tolist()] == list(s)
        assert tgt[i, len(t)] == EOS and (tgt[i, len(t) + 1:] == PAD).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"min_len": 9, "max_len": 3}, "data.min_len=9 is greater than data.max_len=3"),
    ({"task": "copy"}, "data.task='copy' is not valid; valid choices: reverse, sort, add, dates"),
    ({"min_len": 0}, "data.min_len=0"),
    ({"length_buckets": [[20, 10]]}, "lo <= hi"),
])
def test_bad_data_keys_are_one_paragraph_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Seq2SeqDataModule(**kwargs)


def test_a_task_with_too_few_distinct_inputs_says_so():
    dm = Seq2SeqDataModule(task="reverse", min_len=1, max_len=2, num_train=500, num_val=10, num_test=10)
    with pytest.raises(ValueError, match="too few distinct inputs"):
        dm.setup()


# ---- attention ---------------------------------------------------------------------------------------------
def test_dot_attention_is_the_softmax_of_dot_products_over_real_tokens():
    att = Attention("dot", 2)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # the third is padding
    mask = torch.tensor([[True, True, False]])
    context, w = att(torch.tensor([[2.0, 0.0]]), att.prepare(keys), keys, mask)
    e = torch.tensor([math.exp(2.0), 1.0])
    assert torch.allclose(w, torch.tensor([[*(e / e.sum()), 0.0]]))
    assert torch.allclose(context, (w.unsqueeze(-1) * keys).sum(1))


@pytest.mark.parametrize("score", ["additive", "general"])
def test_learned_scores_weigh_only_real_tokens(score):
    att = Attention(score, 8)
    keys, mask = torch.randn(3, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    _, w = att(torch.randn(3, 8), att.prepare(keys), keys, mask)
    assert torch.allclose(w.sum(-1), torch.ones(3)) and (w[~mask] == 0).all()
    assert w[2, 0] == 1.0


# ---- decoding -----------------------------------------------------------------------------------------------
A, B, X, Y, Z = 3, 4, 5, 6, 7
TABLE = {BOS: {A: 0.6, B: 0.4}, A: {X: 0.4, Y: 0.3, Z: 0.3}, B: {EOS: 0.9, X: 0.1},
         X: {EOS: 1.0}, Y: {EOS: 1.0}, Z: {EOS: 1.0}, EOS: {PAD: 1.0}, PAD: {PAD: 1.0}}


class ToyNet(torch.nn.Module):
    """p(next | last token) from TABLE: greedy writes A X (p = 0.24), the best output is B (p = 0.36)."""

    def __init__(self):
        super().__init__()
        logp = torch.full((8, 8), math.log(1e-9))
        for last, row in TABLE.items():
            for nxt, p in row.items():
                logp[last, nxt] = math.log(p)
        self.register_buffer("logp", logp)

    def init_state(self, memory):
        return {"unused": memory["mask"].float()}

    def step(self, memory, state, token, need_weights=False):
        return self.logp[token], state, None


def test_beam_search_finds_the_sequence_greedy_misses():
    net, memory = ToyNet(), {"mask": torch.ones(2, 1, dtype=torch.bool)}
    g, _ = greedy(net, memory, 5)
    assert g[0].tolist() == [A, X, EOS]
    b = beam_search(net, memory, 5, beam_size=2)
    assert b[0].tolist()[:2] == [B, EOS] and (b[0, 2:] == PAD).all()
    assert torch.equal(beam_search(net, memory, 5, beam_size=1)[:, :3], g)


def test_a_wide_beam_equals_brute_force_over_all_outputs():
    net, memory = ToyNet(), {"mask": torch.ones(1, 1, dtype=torch.bool)}
    best, best_lp = None, -math.inf
    for n in range(1, 4):
        for seq in itertools.product(range(3, 8), repeat=n - 1):
            toks, lp, last = [*seq, EOS], 0.0, BOS
            for t in toks:
                lp += float(net.logp[last, t])
                last = t
            if lp > best_lp:
                best, best_lp = toks, lp
    assert beam_search(net, memory, 4, beam_size=8)[0].tolist()[: len(best)] == best == [B, EOS]


def test_compare_counts_tokens_and_whole_sequences():
    tgt = torch.tensor([[5, 6, EOS], [7, EOS, PAD]])
    pred = torch.tensor([[5, 7, EOS, PAD], [7, EOS, PAD, PAD]])
    tokens, seqs = compare(pred, tgt)
    assert tokens.tolist() == [True, False, True, True, True] and seqs.tolist() == [False, True]
    assert compare(torch.tensor([[7]]), torch.tensor([[7, EOS]]))[1].tolist() == [False]  # no <eos>: wrong


# ---- module -------------------------------------------------------------------------------------------------
class Spy(RNNSeq2Seq):
    def step(self, memory, state, token, need_weights=False):
        self.inputs.append(token.clone())
        return super().step(memory, state, token, need_weights)


@pytest.mark.parametrize("ratio", [1.0, 0.0])
def test_teacher_forcing_feeds_the_true_or_the_models_own_tokens(ratio):
    dm = small()
    m = Seq2Seq(Spy(len(dm.vocab), hidden_size=16, embed_dim=8), partial(torch.optim.Adam), vocab=dm.vocab,
                max_output_len=dm.max_target_len(), teacher_forcing=ratio)
    src, src_len, tgt = collate([dm.train_set[i] for i in range(4)])
    m.net.inputs = []
    m.train()
    logits = m(src, src_len, tgt)
    fed = torch.stack(m.net.inputs, 1)  # (B, T)
    assert (fed[:, 0] == BOS).all()
    expected = tgt[:, :-1] if ratio == 1.0 else logits.argmax(-1)[:, :-1]
    assert torch.equal(fed[:, 1:], expected)


def test_teacher_forcing_below_one_needs_a_step_by_step_net():
    dm = small()
    with pytest.raises(ValueError, match="model.teacher_forcing=0.5 needs a net that decodes step by step"):
        Seq2Seq(TransformerSeq2Seq(len(dm.vocab)), partial(torch.optim.Adam), vocab=dm.vocab, max_output_len=11,
                teacher_forcing=0.5)


@pytest.mark.parametrize("kwargs, match", [({"beam_size": 0}, "model.beam_size=0 must be an integer >= 1"),
                                           ({"teacher_forcing": 1.5}, "model.teacher_forcing=1.5 must be in")])
def test_bad_module_keys_are_one_paragraph_errors(kwargs, match):
    dm = small()
    with pytest.raises(ValueError, match=match):
        Seq2Seq(RNNSeq2Seq(len(dm.vocab)), partial(torch.optim.Adam), vocab=dm.vocab, max_output_len=11, **kwargs)


def test_a_bad_attention_is_a_one_paragraph_error():
    with pytest.raises(ValueError, match="model.net.attention='luong' is not valid; valid choices: none, additive, dot"):
        RNNSeq2Seq(13, attention="luong")


@pytest.mark.parametrize("kw", [{"cell": "lstm", "attention": "dot", "num_layers": 2}, {"attention": "none"},
                                {"attention": "general", "bidirectional": False}, {"transformer": True}])
def test_teacher_forced_logits_equal_step_by_step_decoding(kw):
    """The parallel (or unrolled) training pass and the decoder's steps compute the same distribution."""
    dm = small()
    m = module(dm, **kw).eval()
    src, src_len, tgt = collate([dm.train_set[i] for i in range(3)])
    logits = m(src, src_len, tgt)
    memory = m.net.encode(src, src_len)
    state, token = m.net.init_state(memory), torch.full((3,), BOS)
    for t in range(tgt.shape[1]):
        step, state, _ = m.net.step(memory, state, token)
        assert torch.allclose(step, logits[:, t], atol=1e-5)
        token = tgt[:, t]


def test_transformer_decoder_is_causal_and_positions_are_sinusoidal():
    dm = small()
    m = module(dm, transformer=True).eval()
    src, src_len, tgt = collate([dm.train_set[i] for i in range(2)])
    changed = tgt.clone()
    changed[:, 3:] = 4
    a, b = m(src, src_len, tgt), m(src, src_len, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6) and not torch.allclose(a[:, 4:], b[:, 4:])
    pe = sinusoidal_positions(3, 4)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(pe[1], torch.tensor([math.sin(1), math.cos(1), math.sin(1e-2), math.cos(1e-2)]))


@pytest.mark.parametrize("kw", [{"attention": "additive"}, {"transformer": True}])
def test_attention_weights_of_decoding_cover_only_the_source(kw):
    dm = small()
    m = module(dm, **kw).eval()
    src, src_len, _ = collate([dm.val_set[i] for i in range(3)])
    tokens, w = greedy(m.net, m.net.encode(src, src_len), 11, need_weights=True)
    assert w.shape == (3, tokens.shape[1], src.shape[1])
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5)
    assert (w.masked_select((src == PAD).unsqueeze(1).expand_as(w)) == 0).all()


def test_no_attention_draws_no_weights():
    dm = small()
    m = module(dm, attention="none").eval()
    src, src_len, _ = collate([dm.val_set[i] for i in range(2)])
    assert greedy(m.net, m.net.encode(src, src_len), 11, need_weights=True)[1] is None


def test_length_buckets_cover_every_example_once_with_little_padding():
    dm = Seq2SeqDataModule(task="reverse", min_len=1, max_len=40, num_train=3000, num_val=10, num_test=10,
                           batch_size=32)
    dm.setup()
    seen, spreads = [], []
    for _, src_len, _ in dm.train_dataloader():
        seen += src_len.tolist()
        spreads.append(int(src_len.max() - src_len.min()))
    assert sorted(seen) == sorted(len(s) for s, _ in dm.train_set.pairs)
    assert max(spreads) <= 3  # random batches of 32 would span nearly 1..40


def test_lightning_can_shard_the_length_buckets_for_ddp():
    """Under DDP Lightning re-creates the batch sampler around a DistributedSampler, from the arguments it
    captured when it asked the DataModule for its loader (the context of lightning.pytorch's _request_dataloader)."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    dm = Seq2SeqDataModule(task="reverse", num_train=200, num_val=10, num_test=10, batch_size=10)
    dm.setup()
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    shards = [_update_dataloader(loader, DistributedSampler(dm.train_set, num_replicas=2, rank=r, seed=0))
              for r in (0, 1)]
    got = [i for s in shards for b in s.batch_sampler for i in b]
    assert sorted(got) == list(range(200)) and len(shards[0].batch_sampler) == 10
