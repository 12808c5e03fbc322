"""Stop training cleanly when told to: on SIGTERM (a preemption, a kill, Slurm's end of job, and
what the workflow passes on when it is stopped: xtuner_recipe.run_control), SIGINT (Ctrl-C, which
the terminal sends to every process of the run) or SIGUSR1 (what the Slurm profile asks for
ahead of the time limit), every rank finishes its
iteration, the checkpoint of that iteration is saved, and training exits with EXIT_STATUS. The
next run of the same attempt resumes from it, so nothing trained is lost.

The patched xtuner config adds this hook to `custom_hooks`. The hook class is made on first use
(`from xtuner_recipe.preemption import SaveCheckpointOnSignal`, which the config does): the train
wrapper reads this module's constants without importing mmengine and torch.
"""

import functools
import json
import signal
from pathlib import Path

# A file the hook leaves in the work dir: which signal, and the iteration it saved.
STOPPED = "stopped_on_signal.json"
# EX_TEMPFAIL: stopped on request, run again to go on.
EXIT_STATUS = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def __getattr__(name):
    if name == "SaveCheckpointOnSignal":
        return _hook_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _hook_class():
    from mmengine.hooks import CheckpointHook, Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module()
    class SaveCheckpointOnSignal(Hook):
        priority = "LOWEST"

        def __init__(self):
            self.received = 0

        def before_train(self, runner):
            for number in SIGNALS:
                signal.signal(number, self._note)

        def _note(self, number, frame):
            self.received = int(number)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            received = self._agreed(self.received)
            if not received:
                return
            # Every rank saves (DeepSpeed's save is collective), at the same iteration.
            checkpoints = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
            checkpoints[0]._save_checkpoint(runner)
            iteration = runner.iter + 1
            runner.logger.info(f"signal {signal.Signals(received).name}: saved iteration {iteration}"
                               f", stopping (exit status {EXIT_STATUS}); run again to resume")
            if runner.rank == 0:
                (Path(runner.work_dir) / STOPPED).write_text(json.dumps(
                    {"signal": signal.Signals(received).name, "iteration": iteration}) + "\n")
            # No rank leaves before the record is written: the first rank to exit makes srun
            # (--kill-on-bad-exit) or torchrun stop the others.
            from mmengine import dist

            dist.barrier()
            raise SystemExit(EXIT_STATUS)

        @staticmethod
        def _agreed(received):
            """The largest signal number any rank received (0: none), so that all ranks stop at
            the same iteration even when the signal reaches them a moment apart."""
            from mmengine import dist

            if dist.get_world_size() == 1:
                return received
            import torch

            flag = torch.tensor([received], dtype=torch.int64)
            dist.all_reduce(flag, op="max")
            return int(flag.item())

    return SaveCheckpointOnSignal
