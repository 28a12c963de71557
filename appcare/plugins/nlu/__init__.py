"""Rasa NLU graph components of appcare (registered with DefaultV1Recipe) and the
library-based extractors they use: sentence vectors, dates, ages, streets, language."""
