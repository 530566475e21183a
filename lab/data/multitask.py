"""Several labelled datasets at once, for one model with a head per task (lab.models.MultiTask)."""

from __future__ import annotations

from lab.contracts import DataFacts, data_facts

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from lab.data.base import ImageDataModule, check_folds


class MultiTaskDataModule(DataFacts, LightningDataModule):
    """`tasks`: name -> a DataModule of labelled examples of one input shape (e.g. MNIST and Fashion-MNIST).

    Training batches are dicts {task: (x, y)}, one batch of each task per step; an epoch lasts as long as
    the longest task's loader, the shorter ones cycling (Lightning's CombinedLoader, max_size_cycle).
    Validation and test give one loader per task, in `tasks` order (`dataloader_idx` names the task).

    K-fold cross-validation (`folds`, `fold`) splits every task's own training set into `folds` folds, fold `fold`
    of each validating: the tasks take the two keys from here (conf/data/multitask_*.yaml interpolates them), and
    a task whose own folds or fold differ is refused, as the folds of one run must be the same fold everywhere."""

    def __init__(self, tasks: dict[str, LightningDataModule], folds: int | None = None, fold: int = 0) -> None:
        super().__init__()
        if not isinstance(tasks, dict) or not tasks:
            raise ValueError("data.tasks must map at least one task name to a data module (e.g. "
                             "data.tasks.mnist: {_target_: lab.data.MNISTDataModule, ...}).")
        check_folds(folds, fold)
        for name, dm in tasks.items():
            own = (dm.folds, dm.fold) if isinstance(dm, ImageDataModule) else (None, 0)
            if own != (folds, fold):
                raise ValueError(f"data.tasks.{name} has folds={own[0]}, fold={own[1]} and data has folds={folds}, "
                                 f"fold={fold}: every task is validated on the same fold; set data.folds and "
                                 f"data.fold only (the tasks take them: data.tasks.{name}.folds: ${{data.folds}}, "
                                 f"data.tasks.{name}.fold: ${{data.fold}}).")
        shapes = {name: tuple(data_facts(dm).input_shape) for name, dm in tasks.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"data.tasks have inputs of different shapes ({shapes}); one backbone needs one input "
                             "shape (resize, or use tasks of the same kind).")
        for name, dm in tasks.items():
            if not data_facts(dm).classes:
                raise ValueError(f"data.tasks.{name} has no classes: every task needs labelled data.")
        self.tasks = tasks
        self.names = list(tasks)
        self.folds, self.fold = folds, fold

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.tasks.values())).input_shape)

    @property
    def task_classes(self) -> dict[str, list[str]]:
        return {name: [str(c) for c in dm.classes] for name, dm in self.tasks.items()}

    @property
    def batch_size(self) -> int:
        """Examples per optimizer step, all tasks together."""
        return sum(dm.batch_size for dm in self.tasks.values())

    def prepare_data(self) -> None:
        for dm in self.tasks.values():
            dm.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for dm in self.tasks.values():
            dm.setup(stage)

    def train_dataloader(self) -> CombinedLoader:
        return CombinedLoader({n: dm.train_dataloader() for n, dm in self.tasks.items()}, mode="max_size_cycle")

    def val_dataloader(self) -> list[DataLoader]:
        return [dm.val_dataloader() for dm in self.tasks.values()]

    def test_dataloader(self) -> list[DataLoader]:
        return [dm.test_dataloader() for dm in self.tasks.values()]
