//! Performance and energy models (filled by the models issue).
