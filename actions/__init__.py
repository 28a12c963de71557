"""Custom actions of the appcare assistant, one module per topic (rasa-sdk imports them all)."""
