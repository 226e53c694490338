//! A/B slots and boot control (being built).
