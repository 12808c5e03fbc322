"""xtuner's sample chat (EvaluateChatHook) without its second, identical answer at the end.

At the last iteration xtuner's hook answers the evaluation prompts with the final weights (and
saves the answers beside the checkpoint); right after, at the end of training, it answers them
again with the same weights: 6-7 s of a tuned GPU train step that trains for about 20 s
(bench/results/train-step-h100.md). This hook skips that repeat, and answers at the end only
when the last iteration did not (no evaluation_freq, or a run stopped early).

The patched xtuner config uses it in place of EvaluateChatHook (xtuner_recipe.xtuner_config).
"""

from mmengine.registry import HOOKS
from xtuner.engine.hooks import EvaluateChatHook


@HOOKS.register_module()
class SampleChat(EvaluateChatHook):
    answered_last_iteration = False

    def _generate_samples(self, runner, max_new_tokens=None, save_eval_output=False):
        super()._generate_samples(runner, max_new_tokens, save_eval_output)
        self.answered_last_iteration = self.is_last_train_iter(runner)

    def after_train(self, runner):
        if self.answered_last_iteration:
            runner.logger.info("after_train: no second sample chat; the last iteration's used "
                               "the final weights")
            return
        super().after_train(runner)
