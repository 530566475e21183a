"""The lab's SLURM launcher (`hydra/launcher=slurm`, `slurm_multi_gpu`): hydra-submitit-launcher's, with a sweep
that survives its jobs.

Upstream, one job killed outside Python (scancel, out of memory, node failure) makes `job.results()` raise in
the launching process, which then stops waiting for the others and writes no sweep summary; and a dead job is
noticed only when submitit next asks `sacct`, which it does less and less often (every 10 minutes after a while).
Here every job is waited for, `sacct` is asked at least every `poll_s` seconds, a job that ended without a result
gets a failed `result.json` naming its SLURM state, and the sweep summary is written before the failure is raised.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger("lab")


class SlurmLauncher(_SubmititSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher, waiting for every job and reporting the ones that died."""

    POLL_S = 15.0  # the longest a dead job goes unnoticed

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides

        assert self.config is not None and len(job_overrides) > 0
        if shutil.which("sbatch") is None:  # one paragraph, like the lab's config errors, before any job
            print("error: hydra/launcher=slurm submits jobs with SLURM's `sbatch`, which is not on this machine's "
                  "PATH: run the sweep on your cluster's login node, or start the local cluster with "
                  "`scripts/cluster.sh up` (docs/cluster.md); hydra/launcher=basic (the default) or "
                  "submitit_local run the jobs here without SLURM.", file=sys.stderr)
            sys.exit(2)
        # the executor as upstream builds it: launcher keys -> submitit's slurm_* parameters
        executor = submitit.AutoExecutor(cluster="slurm", folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params["max_num_timeout"])
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in self.params.items()
                                      if k not in ("submitit_folder", "max_num_timeout")})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("SLURM sweep output dir: %s", sweep_dir)
        params = []
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}",
                           Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*params, strict=True))
        self._wait(jobs)
        returns = [self._outcome(job, list(overrides), initial_job_idx + i)
                   for i, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True))]
        if any(r.status != JobStatus.COMPLETED for r in returns):
            self._summarize()
        return returns

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:  # in the SLURM job
        from lab.slurm import unwatch, watch

        watch()  # SLURM's warning signal (USR1: default action, death) may come before the run starts
        try:
            return super().__call__(*args, **kwargs)
        finally:
            unwatch()  # the run is over: a late signal must not kill the process while it writes its result

    def _wait(self, jobs: list[Any]) -> None:
        last_check = time.monotonic()
        while not all(job.done() for job in jobs):  # result files every second, sacct as submitit sees fit
            time.sleep(1.0)
            if time.monotonic() - last_check >= self.POLL_S:  # and one sacct call for all jobs every POLL_S
                jobs[0].watcher.update()
                last_check = time.monotonic()

    def _outcome(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        import submitit

        try:
            return job.results()[0]
        except submitit.core.utils.UncompletedJobError as e:
            state = job.state
            if isinstance(e, submitit.core.utils.FailedJobError):  # an error outside the lab's run (e.g. unpickling)
                message = f"SLURM job {job.job_id} failed: {str(e).strip().splitlines()[-1]}"
            else:
                message = (f"SLURM job {job.job_id} ended without a result (state {state}): it was cancelled, ran "
                           "out of time or memory, or its node failed")
            message += f"; its logs: {job.paths.stdout} and {job.paths.stderr}"
            log.error("job #%d: %s", idx, message)
            self._record_failure(overrides, idx, f"{state}: {message}")
            ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
            ret.return_value = RuntimeError(f"{message}\n{str(e)[-2000:]}")
            return ret

    def _job_dir(self, overrides: list[str], idx: int) -> Path:
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = idx
        return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)

    def _record_failure(self, overrides: list[str], idx: int, error: str) -> None:
        from lab.sweep import write_result

        assert self.config is not None
        job_dir = self._job_dir(overrides, idx)
        write_result(job_dir, overrides, self.config.optimized_metric, self.config.optimized_mode, None, error)

    def _summarize(self) -> None:
        from lab.sweep import summarize

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        rows = summarize(sweep_dir, self.config.optimized_metric, self.config.optimized_mode)
        log.error("Sweep summary of %d jobs, failed ones included: %s. Finish the sweep with the same command and "
                  "resume=true (and hydra.sweep.dir=%s).", len(rows), sweep_dir / "summary.md", sweep_dir)
