"""Model cards: one per published version, JSON for tools and HTML for people, beside its bundle."""
