import csv
from dataclasses import dataclass

import torch
from torch import nn

from lab.models.base import evaluating
from lab.tables import html_table, markdown_table, write_dataclass_csv


def test_markdown_table_formats_floats_and_escapes_pipes():
    lines = markdown_table(["a", "b"], [["x|y", 0.123456789], [3, "z"]])
    assert lines == ["| a | b |", "|---|---|", "| x\\|y | 0.123457 |", "| 3 | z |"]


@dataclass
class _Row:
    name: str
    value: float | None


def test_dataclass_rows_become_a_csv_file_with_none_empty(tmp_path):
    write_dataclass_csv(tmp_path / "t.csv", [_Row("a", 1.5), _Row("b", None)])
    with (tmp_path / "t.csv").open() as f:
        assert list(csv.reader(f)) == [["name", "value"], ["a", "1.5"], ["b", ""]]


def test_html_table_escapes_unless_told_not_to():
    assert html_table(["k"], [["<b>"]], "final") == "<table class='final'><tr><th>k</th></tr><tr><td>&lt;b&gt;</td></tr></table>"
    assert "<td><code>x</code></td>" in html_table(["k"], [["<code>x</code>"]], escape=False)


def test_evaluating_restores_the_mode_and_takes_no_gradients():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    with evaluating(net):
        assert not net.training
        assert not net(torch.ones(1, 2)).requires_grad
    assert net.training
