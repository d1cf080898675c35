"""Label sets of every data set, in the order the classifier heads use."""
from __future__ import annotations

# SemEval-2023 Task 3. Official names, as written in the release's label files.
GENRES: tuple[str, ...] = ("reporting", "opinion", "satire")
FRAMES: tuple[str, ...] = (
    "Economic", "Capacity_and_resources", "Morality", "Fairness_and_equality",
    "Legality_Constitutionality_and_jurisprudence", "Policy_prescription_and_evaluation",
    "Crime_and_punishment", "Security_and_defense", "Health_and_safety", "Quality_of_life",
    "Cultural_identity", "Public_opinion", "Political", "External_regulation_and_reputation",
)
TECHNIQUES: tuple[str, ...] = (
    "Appeal_to_Authority", "Appeal_to_Popularity", "Appeal_to_Values", "Appeal_to_Fear-Prejudice",
    "Flag_Waving", "Causal_Oversimplification", "False_Dilemma-No_Choice",
    "Consequential_Oversimplification", "Straw_Man", "Red_Herring", "Whataboutism", "Slogans",
    "Appeal_to_Time", "Conversation_Killer", "Loaded_Language", "Repetition",
    "Exaggeration-Minimisation", "Obfuscation-Vagueness-Confusion", "Name_Calling-Labeling",
    "Doubt", "Guilt_by_Association", "Appeal_to_Hypocrisy", "Questioning_the_Reputation",
)
# SIB-200, in the order of its labels.txt.
SIB200_LABELS: tuple[str, ...] = (
    "science/technology", "travel", "politics", "sports", "health", "entertainment", "geography",
)
# BRIGHTER (SemEval-2025 Task 11, track A). English has no `disgust` column; the head keeps
# all six so every language shares one output layer.
EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise")

SEMEVAL_LABELS = {1: GENRES, 2: FRAMES, 3: TECHNIQUES}
SEMEVAL_SUBTASKS = tuple(SEMEVAL_LABELS)


def _check_subtask(subtask: int | None) -> int:
    if subtask is None:
        raise ValueError("semeval2023 needs a subtask: 1 (genre), 2 (framing) or 3 (persuasion)")
    try:
        k = int(subtask)
    except (TypeError, ValueError):
        k = 0
    if k not in SEMEVAL_LABELS:
        raise ValueError(f"unknown semeval2023 subtask {subtask!r}; use 1, 2 or 3")
    return k


def label_names(dataset: str, subtask: int | None = None) -> list[str]:
    """The label vocabulary of `dataset` (and SemEval `subtask`), in head order."""
    if dataset == "semeval2023":
        return list(SEMEVAL_LABELS[_check_subtask(subtask)])
    if dataset == "sib200":
        return list(SIB200_LABELS)
    if dataset == "brighter":
        return list(EMOTIONS)
    raise ValueError(f"unknown dataset {dataset!r}; use semeval2023, sib200 or brighter")


def is_multilabel(dataset: str, subtask: int | None = None) -> bool:
    """Genre (ST1) and SIB-200 topics are single-label; frames, techniques, emotions are not."""
    if dataset == "semeval2023":
        return _check_subtask(subtask) != 1
    if dataset == "sib200":
        return False
    if dataset == "brighter":
        return True
    raise ValueError(f"unknown dataset {dataset!r}; use semeval2023, sib200 or brighter")
