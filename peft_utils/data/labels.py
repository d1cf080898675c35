"""Label sets of the built-in data sets, in the order the classifier heads use (the
registry, peft_utils.data.registry, says which task uses which)."""
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
