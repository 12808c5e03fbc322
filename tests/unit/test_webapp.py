"""The web demo's score table: the report's scores, then each multiple-choice task with its error."""

from xtuner_recipe.webapp import score_table


def test_the_score_table_has_every_score_and_each_tasks_accuracy_with_its_error():
    report = {"scores": {"heldout": {"base": 0.0, "merged": 0.9}},
              "multiple_choice": {"general_choice_en": {
                  "questions": 160, "base": {"acc": 0.675, "stderr": 0.037},
                  "merged": {"acc": 0.66875, "stderr": 0.0373}}}}
    assert score_table(report) == {
        "heldout": {"base": "0.00", "fine-tuned": "0.90"},
        "general_choice_en": {"base": "0.675 ± 0.037", "fine-tuned": "0.669 ± 0.037"}}
