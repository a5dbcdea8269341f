"""The side-by-side benchmark against the peers, and the production-settings sweep."""
