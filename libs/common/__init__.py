"""What every service shares: settings, logging, subjects, event models, engine adapters."""
